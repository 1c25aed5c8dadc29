use super::*;

/// `meta.freelist` when no freelist page is kept (etcd 3.4's own snapshots).
const NO_FREELIST: u64 = u64::MAX;

fn bucket(pairs: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>) -> Bucket {
    pairs.into_iter().collect()
}

#[test]
fn the_meta_checksum_is_fnv1a_over_the_meta_before_it() {
    // bbolt's fresh-database meta: root 3, freelist 2, 4 pages, txid 0 (a vector checked
    // against etcdctl).
    let mut meta = Vec::new();
    for field in [MAGIC, VERSION, 4096, 0] {
        meta.extend_from_slice(&field.to_le_bytes());
    }
    for field in [3u64, 0, 2, 4, 0] {
        meta.extend_from_slice(&field.to_le_bytes());
    }
    assert_eq!(fnv1a64(&meta), 0x0751_6e11_4689_fdee);
}

#[test]
fn buckets_big_and_small_read_back_as_written() {
    let many = bucket((0..3000u32).map(|i| (format!("key-{i:05}").into_bytes(), vec![7; 100])));
    let big_value = bucket([
        (b"a".to_vec(), vec![1; 10_000]),
        (b"b".to_vec(), b"small".to_vec()),
    ]);
    let buckets: BTreeMap<Vec<u8>, Bucket> = [
        (b"key".to_vec(), many),
        (b"lease".to_vec(), big_value),
        (b"members".to_vec(), Bucket::new()),
    ]
    .into_iter()
    .collect();
    let file = write(&buckets).unwrap();
    assert_eq!(read(&file).unwrap(), buckets);
    // Dense: the page count in the meta is the file's length in pages.
    assert_eq!(file.len() % PAGE_SIZE, 0);
    let pages = u64_at(&file, HEADER + 40).unwrap();
    assert_eq!(pages as usize * PAGE_SIZE, file.len());
    // A trailing SHA-256 (as etcd appends) is ignored.
    let mut with_hash = file.clone();
    with_hash.extend_from_slice(&[9; 32]);
    assert_eq!(read(&with_hash).unwrap(), buckets);
}

#[test]
fn the_reader_takes_the_meta_with_the_higher_txid_and_survives_one_broken() {
    let buckets: BTreeMap<Vec<u8>, Bucket> =
        [(b"key".to_vec(), bucket([(b"k".to_vec(), b"v".to_vec())]))].into();
    let mut file = write(&buckets).unwrap();
    // Break meta 0's checksum: meta 1 (same root) still opens the file.
    file[HEADER + 56] ^= 0xff;
    assert_eq!(read(&file).unwrap(), buckets);
    file[PAGE_SIZE + HEADER] ^= 0xff;
    assert_eq!(read(&file), Err(BboltError::NotBbolt("no valid meta page")));
}

#[test]
fn an_inline_bucket_is_read_from_its_value() {
    // What bbolt writes for a small bucket: its leaf page inside the root element's value.
    let mut scratch = Writer { file: Vec::new() };
    let element = Element {
        flags: 0,
        key: b"only",
        value: b"one",
    };
    let start = scratch.file.len();
    scratch.leaf(&[element]);
    let inline_page = &scratch.file[start..start + HEADER + ELEMENT + 7];
    let mut value = vec![0u8; 16];
    value.extend_from_slice(inline_page);
    let mut file = Writer { file: Vec::new() };
    file.allocate(1, META_PAGE, 0);
    file.allocate(1, META_PAGE, 0);
    let root = file.leaf(&[Element {
        flags: BUCKET_ELEMENT,
        key: b"alarm",
        value: &value,
    }]);
    file.metas(root, NO_FREELIST);
    let read = read(&file.file).unwrap();
    assert_eq!(
        read[&b"alarm".to_vec()],
        bucket([(b"only".to_vec(), b"one".to_vec())])
    );
}

#[test]
fn garbage_and_cut_files_are_refused_without_a_panic() {
    assert!(matches!(read(&[0u8; 100]), Err(BboltError::NotBbolt(_))));
    assert!(matches!(
        read(&vec![0xAB; 3 * PAGE_SIZE]),
        Err(BboltError::NotBbolt(_))
    ));
    let buckets: BTreeMap<Vec<u8>, Bucket> = [(
        b"key".to_vec(),
        bucket((0..500u32).map(|i| (i.to_be_bytes().to_vec(), vec![1; 50]))),
    )]
    .into();
    let file = write(&buckets).unwrap();
    for cut in [2 * PAGE_SIZE, 3 * PAGE_SIZE + 100, file.len() - PAGE_SIZE] {
        assert!(read(&file[..cut]).is_err(), "cut at {cut}");
    }
}

#[test]
fn empty_keys_are_refused_as_bbolt_refuses_them() {
    let buckets: BTreeMap<Vec<u8>, Bucket> =
        [(b"key".to_vec(), bucket([(Vec::new(), b"v".to_vec())]))].into();
    assert!(matches!(write(&buckets), Err(BboltError::EmptyKey { .. })));
}

/// A file of two metas, `pages` written by `build` (which returns the root bucket's page).
fn hand_made(build: impl FnOnce(&mut Writer) -> u64) -> Vec<u8> {
    let mut file = Writer { file: Vec::new() };
    file.allocate(1, META_PAGE, 0);
    file.allocate(1, META_PAGE, 0);
    let root = build(&mut file);
    file.metas(root, NO_FREELIST);
    file.file
}

fn bucket_header(root: u64) -> Vec<u8> {
    let mut header = root.to_le_bytes().to_vec();
    header.extend_from_slice(&[0; 8]);
    header
}

#[test]
fn a_page_reached_twice_is_refused() {
    // Two buckets sharing one tree: work (and memory) multiplied, as a hostile file would.
    let file = hand_made(|file| {
        let shared = file.leaf(&[Element {
            flags: 0,
            key: b"k",
            value: b"v",
        }]);
        let header = bucket_header(shared);
        file.leaf(&[
            Element {
                flags: BUCKET_ELEMENT,
                key: b"a",
                value: &header,
            },
            Element {
                flags: BUCKET_ELEMENT,
                key: b"b",
                value: &header,
            },
        ])
    });
    assert!(matches!(read(&file), Err(BboltError::SharedPage { .. })));
}

#[test]
fn page_ids_past_the_end_are_refused_without_overflow() {
    for far in [u64::MAX, u64::MAX / PAGE_SIZE as u64, 1 << 40] {
        let file = hand_made(|file| {
            let header = bucket_header(far);
            file.leaf(&[Element {
                flags: BUCKET_ELEMENT,
                key: b"key",
                value: &header,
            }])
        });
        assert!(
            matches!(read(&file), Err(BboltError::PageOutOfRange { .. })),
            "page {far}"
        );
    }
}

#[test]
fn branch_levels_shrink_even_with_keys_too_big_for_a_page() {
    // Keys of 3 KiB: one to a branch page unless nodes take two children at least.
    let buckets: BTreeMap<Vec<u8>, Bucket> = [(
        b"key".to_vec(),
        bucket((0..40u8).map(|i| (vec![i; 3000], vec![i; 10]))),
    )]
    .into();
    let file = write(&buckets).unwrap();
    assert_eq!(read(&file).unwrap(), buckets);
}

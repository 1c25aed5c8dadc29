//! bbolt's file format (go.etcd.io/bbolt, the database inside an etcd snapshot), written
//! and read (pure): enough for `etcdctl snapshot status` and `snapshot restore` to take the
//! snapshots Rudder streams, and for `rudder snapshot restore` to read etcd's and ours.
//!
//! ```text
//!  page 0, 1   meta (magic, version 2, page size, root bucket, freelist, page count, txid,
//!              FNV-1a 64 checksum); a reader takes the valid one with the higher txid
//!  page 2      freelist, empty (every page is in use)
//!  page 3..    each bucket's B+tree (leaf pages of key/value elements, branch pages of
//!              first-key/child elements; a node too big for a page spans more), then the
//!              root bucket's tree, whose elements are the buckets
//! ```
//!
//! All integers are little-endian (bbolt writes its structs as they are in memory, and
//! etcd runs on little-endian machines). The file is dense (every page below the page
//! count is reachable or free) because `snapshot status` checks exactly that. Buckets
//! written here always have pages of their own; the reader also takes bbolt's inline
//! buckets (a small bucket's page carried in its value), which etcd's snapshots hold.

use std::collections::BTreeMap;

/// The page size written (bbolt's default on Linux).
pub const PAGE_SIZE: usize = 4096;

const MAGIC: u32 = 0xED0C_DAED;
const VERSION: u32 = 2;
const HEADER: usize = 16;
const ELEMENT: usize = 16;
const BRANCH_PAGE: u16 = 0x01;
const LEAF_PAGE: u16 = 0x02;
const META_PAGE: u16 = 0x04;
const FREELIST_PAGE: u16 = 0x10;
/// A leaf element whose value is a bucket.
const BUCKET_ELEMENT: u32 = 0x01;
/// Most elements in one page (its count is 16 bits, 0xFFFF reserved).
const MAX_ELEMENTS: usize = 0xFFFE;
/// How deep a tree may be before the reader calls it a loop.
const MAX_DEPTH: usize = 64;

/// A bucket: its keys (byte order) and values.
pub type Bucket = BTreeMap<Vec<u8>, Vec<u8>>;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BboltError {
    #[error("not a bbolt database: {0}")]
    NotBbolt(&'static str),
    #[error("page {page} lies past the end of the file")]
    PageOutOfRange { page: u64 },
    #[error("page {page} is neither a branch nor a leaf (flags {flags:#x})")]
    NotANode { page: u64, flags: u16 },
    #[error("an element of page {page} points past the page")]
    Truncated { page: u64 },
    #[error("the tree under page {page} is deeper than {MAX_DEPTH} levels (a loop?)")]
    TooDeep { page: u64 },
    #[error("{name:?} in the root bucket is not a bucket")]
    NotABucket { name: String },
    #[error("bucket {name:?} has an empty key, which bbolt refuses")]
    EmptyKey { name: String },
    #[error("page {page} is reached twice (a loop or a shared subtree: a damaged file)")]
    SharedPage { page: u64 },
    #[error("the elements of page {page} overlap others (a damaged file)")]
    Overlapping { page: u64 },
    #[error("the keys of bucket {name:?} are not in order (a damaged file)")]
    Unordered { name: String },
}

/// FNV-1a, 64 bits (bbolt's meta checksum).
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// One element of a node being written.
struct Element<'a> {
    flags: u32,
    key: &'a [u8],
    value: &'a [u8],
}

/// The file being written, a page at a time.
struct Writer {
    file: Vec<u8>,
}

impl Writer {
    /// Fills both meta pages (0 and 1, already allocated) as bbolt's own copy of a database
    /// writes them: the same but for the txid (2 and 1), each with its checksum.
    fn metas(&mut self, root: u64, freelist: u64) {
        let pages = self.pages();
        for (page, txid) in [(0usize, 2u64), (1, 1)] {
            let at = page * PAGE_SIZE + HEADER;
            let meta = &mut self.file[at..at + 64];
            meta[0..4].copy_from_slice(&MAGIC.to_le_bytes());
            meta[4..8].copy_from_slice(&VERSION.to_le_bytes());
            meta[8..12].copy_from_slice(&(PAGE_SIZE as u32).to_le_bytes());
            meta[16..24].copy_from_slice(&root.to_le_bytes());
            meta[32..40].copy_from_slice(&freelist.to_le_bytes());
            meta[40..48].copy_from_slice(&pages.to_le_bytes());
            meta[48..56].copy_from_slice(&txid.to_le_bytes());
            let checksum = fnv1a64(&meta[0..56]);
            meta[56..64].copy_from_slice(&checksum.to_le_bytes());
        }
    }

    fn pages(&self) -> u64 {
        (self.file.len() / PAGE_SIZE) as u64
    }

    /// Appends `pages` zeroed pages with a header; returns the first's id.
    fn allocate(&mut self, pages: usize, flags: u16, count: usize) -> (u64, usize) {
        let id = self.pages();
        let start = self.file.len();
        self.file.resize(start + pages * PAGE_SIZE, 0);
        let header = &mut self.file[start..start + HEADER];
        header[0..8].copy_from_slice(&id.to_le_bytes());
        header[8..10].copy_from_slice(&flags.to_le_bytes());
        header[10..12].copy_from_slice(&(count as u16).to_le_bytes());
        header[12..16].copy_from_slice(&((pages - 1) as u32).to_le_bytes());
        (id, start)
    }

    /// Writes one leaf node of `elements`; returns its page id.
    fn leaf(&mut self, elements: &[Element]) -> u64 {
        let data: usize = elements.iter().map(|e| e.key.len() + e.value.len()).sum();
        let size = HEADER + ELEMENT * elements.len() + data;
        let (id, start) = self.allocate(size.div_ceil(PAGE_SIZE), LEAF_PAGE, elements.len());
        let mut at = HEADER + ELEMENT * elements.len();
        for (i, element) in elements.iter().enumerate() {
            let slot = start + HEADER + ELEMENT * i;
            let pos = (at - (HEADER + ELEMENT * i)) as u32;
            let fields = [
                element.flags,
                pos,
                element.key.len() as u32,
                element.value.len() as u32,
            ];
            for (n, field) in fields.iter().enumerate() {
                self.file[slot + 4 * n..slot + 4 * n + 4].copy_from_slice(&field.to_le_bytes());
            }
            let key_at = start + at;
            self.file[key_at..key_at + element.key.len()].copy_from_slice(element.key);
            let value_at = key_at + element.key.len();
            self.file[value_at..value_at + element.value.len()].copy_from_slice(element.value);
            at += element.key.len() + element.value.len();
        }
        id
    }

    /// Writes one branch node over `children` (first key, page); returns its page id.
    fn branch(&mut self, children: &[(Vec<u8>, u64)]) -> u64 {
        let data: usize = children.iter().map(|(key, _)| key.len()).sum();
        let size = HEADER + ELEMENT * children.len() + data;
        let (id, start) = self.allocate(size.div_ceil(PAGE_SIZE), BRANCH_PAGE, children.len());
        let mut at = HEADER + ELEMENT * children.len();
        for (i, (key, child)) in children.iter().enumerate() {
            let slot = start + HEADER + ELEMENT * i;
            let pos = (at - (HEADER + ELEMENT * i)) as u32;
            self.file[slot..slot + 4].copy_from_slice(&pos.to_le_bytes());
            self.file[slot + 4..slot + 8].copy_from_slice(&(key.len() as u32).to_le_bytes());
            self.file[slot + 8..slot + 16].copy_from_slice(&child.to_le_bytes());
            self.file[start + at..start + at + key.len()].copy_from_slice(key);
            at += key.len();
        }
        id
    }

    /// Writes a B+tree of `elements` (sorted, keys unique); returns its root page.
    fn tree(&mut self, elements: &[Element]) -> u64 {
        let mut level: Vec<(Vec<u8>, u64)> = Vec::new();
        let sizes = |i: usize| elements[i].key.len() + elements[i].value.len();
        for node in split(elements.len(), 1, sizes) {
            let page = self.leaf(&elements[node.clone()]);
            let first = elements
                .get(node.start)
                .map_or(Vec::new(), |e| e.key.to_vec());
            level.push((first, page));
        }
        while level.len() > 1 {
            let mut above = Vec::new();
            // At least two children a node, so every level is smaller than the one below.
            for node in split(level.len(), 2, |i| level[i].0.len()) {
                let page = self.branch(&level[node.clone()]);
                above.push((level[node.start].0.clone(), page));
            }
            level = above;
        }
        level[0].1
    }
}

/// Splits `count` elements (each `size(i)` bytes of key and value) into nodes that fit a
/// page, each with at least `least` elements (a node that cannot fit spans pages); at least
/// one node, empty when there are no elements.
fn split(count: usize, least: usize, size: impl Fn(usize) -> usize) -> Vec<std::ops::Range<usize>> {
    let mut nodes = Vec::new();
    let mut start = 0;
    let mut used = HEADER;
    for i in 0..count {
        let more = ELEMENT + size(i);
        let full = used + more > PAGE_SIZE || i - start == MAX_ELEMENTS;
        // A cut leaving fewer than `least` on either side waits: the node spans pages.
        if full && i - start >= least && count - i >= least {
            nodes.push(start..i);
            start = i;
            used = HEADER;
        }
        used += more;
    }
    nodes.push(start..count);
    nodes
}

/// A bbolt file holding `buckets` (by name), each with a tree of its own.
pub fn write(buckets: &BTreeMap<Vec<u8>, Bucket>) -> Result<Vec<u8>, BboltError> {
    let mut writer = Writer { file: Vec::new() };
    writer.allocate(1, META_PAGE, 0);
    writer.allocate(1, META_PAGE, 0);
    let freelist = writer.allocate(1, FREELIST_PAGE, 0).0;
    let mut headers = Vec::new();
    for (name, bucket) in buckets {
        if bucket.contains_key(&[][..]) || name.is_empty() {
            return Err(BboltError::EmptyKey {
                name: String::from_utf8_lossy(name).into_owned(),
            });
        }
        let elements: Vec<Element> = bucket
            .iter()
            .map(|(key, value)| Element {
                flags: 0,
                key,
                value,
            })
            .collect();
        let root = writer.tree(&elements);
        let mut header = [0u8; 16];
        header[0..8].copy_from_slice(&root.to_le_bytes());
        headers.push((name, header));
    }
    let roots: Vec<Element> = headers
        .iter()
        .map(|(name, header)| Element {
            flags: BUCKET_ELEMENT,
            key: name,
            value: header,
        })
        .collect();
    let root = writer.tree(&roots);
    writer.metas(root, freelist);
    Ok(writer.file)
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        bytes.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        bytes.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        bytes.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// A meta page's (root bucket page, txid), if it is valid.
fn meta(file: &[u8], at: usize) -> Option<(u32, u64, u64)> {
    let meta = file.get(at + HEADER..at + HEADER + 64)?;
    let valid = u32_at(meta, 0)? == MAGIC
        && u32_at(meta, 4)? == VERSION
        && u64_at(meta, 56)? == fnv1a64(&meta[0..56]);
    valid.then(|| Some((u32_at(meta, 8)?, u64_at(meta, 16)?, u64_at(meta, 48)?)))?
}

/// Every bucket in a bbolt file (a trailing SHA-256, as etcd appends, is ignored).
pub fn read(file: &[u8]) -> Result<BTreeMap<Vec<u8>, Bucket>, BboltError> {
    let first = meta(file, 0);
    // The second meta sits one page further, at the page size the first says (or 4096).
    let page_size = first.map_or(PAGE_SIZE, |(size, _, _)| size as usize);
    if !page_size.is_power_of_two()
        || !(1024..=65536).contains(&page_size)
        || file.len() < 2 * page_size
    {
        return Err(BboltError::NotBbolt("too small, or no valid page size"));
    }
    let second = meta(file, page_size);
    let (_, root, _) = match (first, second) {
        (Some(a), Some(b)) => {
            if a.2 >= b.2 {
                a
            } else {
                b
            }
        }
        (Some(one), None) | (None, Some(one)) => one,
        (None, None) => return Err(BboltError::NotBbolt("no valid meta page")),
    };
    let mut reader = Reader {
        file,
        page_size,
        visited: std::collections::HashSet::new(),
        budget: file.len(),
    };
    let mut buckets = BTreeMap::new();
    for (flags, name, value) in reader.elements_of(root, 0)? {
        let name_text = || String::from_utf8_lossy(&name).into_owned();
        if flags & BUCKET_ELEMENT == 0 || value.len() < 16 {
            return Err(BboltError::NotABucket { name: name_text() });
        }
        let bucket_root = u64_at(&value, 0).unwrap_or(0);
        let elements = if bucket_root == 0 {
            // Inline: the bucket's one leaf page follows its 16-byte header.
            reader.leaf_elements(&value[16..], 0)?
        } else {
            reader.elements_of(bucket_root, 0)?
        };
        if elements.windows(2).any(|pair| pair[0].1 >= pair[1].1) {
            return Err(BboltError::Unordered { name: name_text() });
        }
        let bucket = elements
            .into_iter()
            .map(|(_, key, value)| (key, value))
            .collect();
        buckets.insert(name, bucket);
    }
    Ok(buckets)
}

/// Reads nodes out of a file, each page once (a page reached twice is a damaged or hostile
/// file: a loop, or a subtree shared to multiply the work), and no more element bytes than
/// the file holds.
struct Reader<'a> {
    file: &'a [u8],
    page_size: usize,
    visited: std::collections::HashSet<u64>,
    budget: usize,
}

type Elements = Vec<(u32, Vec<u8>, Vec<u8>)>;

impl<'a> Reader<'a> {
    /// The node at `page` with its overflow pages, each page taken as visited.
    fn node(&mut self, page: u64) -> Result<&'a [u8], BboltError> {
        let out_of_range = || BboltError::PageOutOfRange { page };
        let start = usize::try_from(page)
            .ok()
            .and_then(|page| page.checked_mul(self.page_size))
            .ok_or_else(out_of_range)?;
        let overflow = start
            .checked_add(12)
            .and_then(|at| u32_at(self.file, at))
            .ok_or_else(out_of_range)?;
        let end = (overflow as usize + 1)
            .checked_mul(self.page_size)
            .and_then(|size| size.checked_add(start))
            .ok_or_else(out_of_range)?;
        let node = self.file.get(start..end).ok_or_else(out_of_range)?;
        for covered in page..=page + u64::from(overflow) {
            if !self.visited.insert(covered) {
                return Err(BboltError::SharedPage { page: covered });
            }
        }
        Ok(node)
    }

    /// Every leaf element under `page`, in key order.
    fn elements_of(&mut self, page: u64, depth: usize) -> Result<Elements, BboltError> {
        if depth > MAX_DEPTH {
            return Err(BboltError::TooDeep { page });
        }
        let node = self.node(page)?;
        let flags = u16_at(node, 8).unwrap_or(0);
        if flags & LEAF_PAGE != 0 {
            return self.leaf_elements(node, page);
        }
        if flags & BRANCH_PAGE == 0 {
            return Err(BboltError::NotANode { page, flags });
        }
        let count = usize::from(u16_at(node, 10).unwrap_or(0));
        let mut elements = Vec::new();
        for i in 0..count {
            let slot = HEADER + ELEMENT * i;
            let child = u64_at(node, slot + 8).ok_or(BboltError::Truncated { page })?;
            elements.extend(self.elements_of(child, depth + 1)?);
        }
        Ok(elements)
    }

    /// The elements of one leaf `node` (a page, or an inline bucket's page).
    fn leaf_elements(&mut self, node: &[u8], page: u64) -> Result<Elements, BboltError> {
        let truncated = || BboltError::Truncated { page };
        let flags = u16_at(node, 8).ok_or_else(truncated)?;
        if flags & LEAF_PAGE == 0 {
            return Err(BboltError::NotANode { page, flags });
        }
        let count = usize::from(u16_at(node, 10).unwrap_or(0));
        let mut elements = Vec::with_capacity(count);
        for i in 0..count {
            let slot = HEADER + ELEMENT * i;
            let field = |n: usize| u32_at(node, slot + 4 * n).ok_or_else(truncated);
            let (element_flags, pos, key_size, value_size) = (
                field(0)?,
                field(1)? as usize,
                field(2)? as usize,
                field(3)? as usize,
            );
            let key_at = slot.checked_add(pos).ok_or_else(truncated)?;
            let value_at = key_at.checked_add(key_size).ok_or_else(truncated)?;
            let end = value_at.checked_add(value_size).ok_or_else(truncated)?;
            let (key, value) = (
                node.get(key_at..value_at).ok_or_else(truncated)?,
                node.get(value_at..end).ok_or_else(truncated)?,
            );
            // Elements of a sound file never overlap: together they fit in it.
            self.budget = self
                .budget
                .checked_sub(key.len() + value.len())
                .ok_or(BboltError::Overlapping { page })?;
            elements.push((element_flags, key.to_vec(), value.to_vec()));
        }
        Ok(elements)
    }
}

#[cfg(test)]
#[path = "bbolt_tests.rs"]
mod tests;

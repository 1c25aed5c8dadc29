//! Sets of completion indexes in the compressed text form Kubernetes writes to
//! `status.completedIndexes`: ascending, runs of consecutive indexes joined with a dash,
//! `"1,3-5"`. Pure.

use std::collections::BTreeSet;

/// Reads `"1,3-5"`; pieces that are not numbers or ranges are skipped, as Kubernetes does
/// (the field is written by the controller alone).
pub fn parse(text: &str) -> BTreeSet<u32> {
    let mut set = BTreeSet::new();
    for piece in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (first, last) = piece.split_once('-').unwrap_or((piece, piece));
        if let (Ok(first), Ok(last)) = (first.trim().parse::<u32>(), last.trim().parse::<u32>()) {
            set.extend(first..=last);
        }
    }
    set
}

/// Writes the set as `"1,3-5"` (empty: `""`).
pub fn format(set: &BTreeSet<u32>) -> String {
    let mut runs: Vec<(u32, u32)> = Vec::new();
    for &index in set {
        match runs.last_mut() {
            Some((_, last)) if last.checked_add(1) == Some(index) => *last = index,
            _ => runs.push((index, index)),
        }
    }
    let texts: Vec<String> = runs
        .into_iter()
        .map(|(first, last)| match last - first {
            0 => first.to_string(),
            _ => format!("{first}-{last}"),
        })
        .collect();
    texts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_indexes_compress_into_ranges() {
        let cases: &[(&[u32], &str)] = &[
            (&[], ""),
            (&[0], "0"),
            (&[1, 3, 4, 5], "1,3-5"),
            (&[0, 1, 2, 7, 9, 10], "0-2,7,9-10"),
        ];
        for (indexes, text) in cases {
            let set: BTreeSet<u32> = indexes.iter().copied().collect();
            assert_eq!(format(&set), *text);
            assert_eq!(parse(text), set, "{text}");
        }
    }

    #[test]
    fn garbage_pieces_are_skipped() {
        assert_eq!(parse("1, x,3-4,5-a"), [1, 3, 4].into());
    }
}

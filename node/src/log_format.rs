//! Container logs in the CRI format that the kubelet and containerd write: one file line
//! per piece of output, `2026-12-05T06:13:08.123456789Z stdout F the line`. F marks a full
//! line (its newline dropped); P marks a piece of a longer line that the next one
//! continues. The shim writes it (runtime/linux/shim.rs); the node's log endpoint
//! (server.rs) reads it back as the container wrote it. When asked, each line's time goes
//! before it (`kubectl logs --timestamps`), and lines from before a time are left out
//! (`--since`, `--since-time`). Pure.

use jiff::Timestamp;

/// The longest piece a file line holds: a longer line is split into P pieces.
pub const MAX_PIECE: usize = 16 * 1024;

/// Which of the container's outputs a piece came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Stdout,
    Stderr,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::Stdout => "stdout",
            Source::Stderr => "stderr",
        }
    }
}

/// Cuts one output into pieces as its bytes come: full lines, and pieces of a line longer
/// than [`MAX_PIECE`].
#[derive(Debug, Default)]
pub struct Splitter {
    pending: Vec<u8>,
}

/// A piece of output: its bytes, and whether a newline ended it.
pub type Piece = (Vec<u8>, bool);

impl Splitter {
    /// The pieces `chunk` completes.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Piece> {
        self.pending.extend_from_slice(chunk);
        let mut pieces = Vec::new();
        let mut start = 0;
        while let Some(at) = self.pending[start..].iter().position(|b| *b == b'\n') {
            let mut line = &self.pending[start..start + at];
            while line.len() > MAX_PIECE {
                pieces.push((line[..MAX_PIECE].to_vec(), false));
                line = &line[MAX_PIECE..];
            }
            pieces.push((line.to_vec(), true));
            start += at + 1;
        }
        self.pending.drain(..start);
        while self.pending.len() > MAX_PIECE {
            pieces.push((self.pending.drain(..MAX_PIECE).collect(), false));
        }
        pieces
    }

    /// At the output's end: what is left of a last line without its newline.
    pub fn finish(&mut self) -> Option<Piece> {
        (!self.pending.is_empty()).then(|| (std::mem::take(&mut self.pending), false))
    }
}

/// The file line for a piece, with its newline.
pub fn encode(time: Timestamp, source: Source, piece: &Piece) -> Vec<u8> {
    let (content, full) = piece;
    let tag = if *full { "F" } else { "P" };
    let mut line = format!("{time} {} {tag} ", source.as_str()).into_bytes();
    line.extend_from_slice(content);
    line.push(b'\n');
    line
}

/// A file line, read.
#[derive(Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    pub time: Timestamp,
    pub source: Source,
    pub full: bool,
    pub content: &'a [u8],
}

/// Reads a file line (without its newline); `None` for one not in the format.
pub fn parse(line: &[u8]) -> Option<Entry<'_>> {
    let mut fields = line.splitn(4, |b| *b == b' ');
    let time = std::str::from_utf8(fields.next()?).ok()?.parse().ok()?;
    let source = match fields.next()? {
        b"stdout" => Source::Stdout,
        b"stderr" => Source::Stderr,
        _ => return None,
    };
    let full = match fields.next()? {
        b"F" => true,
        b"P" => false,
        _ => return None,
    };
    Some(Entry {
        time,
        source,
        full,
        content: fields.next().unwrap_or_default(),
    })
}

/// How a log is shown.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// Each line's time before it.
    pub timestamps: bool,
    /// Only the lines written at or after this time.
    pub since: Option<Timestamp>,
}

/// Turns file lines back into what the container wrote, as a [`View`] asks.
#[derive(Debug)]
pub struct Reader {
    view: View,
    /// The last piece shown ended its line (so the next starts one: its time goes first).
    at_line_start: bool,
}

impl Reader {
    pub fn new(view: View) -> Self {
        Reader {
            view,
            at_line_start: true,
        }
    }

    /// Appends what file line `line` (without its newline) shows to `out`. A line not in
    /// the format (a file written before it) shows as it is.
    pub fn show(&mut self, line: &[u8], out: &mut Vec<u8>) {
        let Some(entry) = parse(line) else {
            out.extend_from_slice(line);
            out.push(b'\n');
            self.at_line_start = true;
            return;
        };
        if self.view.since.is_some_and(|since| entry.time < since) {
            return;
        }
        if self.view.timestamps && self.at_line_start {
            // Nanoseconds always, as the kubelet shows them (RFC3339NanoFixed): the times
            // line up and sort as text.
            out.extend_from_slice(format!("{:.9}", entry.time).as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(entry.content);
        if entry.full {
            out.push(b'\n');
        }
        self.at_line_start = entry.full;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).unwrap()
    }

    #[test]
    fn output_is_cut_into_full_lines_and_pieces_of_long_ones() {
        let mut splitter = Splitter::default();
        assert_eq!(splitter.push(b"one\ntw"), vec![(b"one".to_vec(), true)]);
        assert_eq!(
            splitter.push(b"o\n\nthree"),
            vec![(b"two".to_vec(), true), (Vec::new(), true)]
        );
        assert_eq!(splitter.finish(), Some((b"three".to_vec(), false)));
        assert_eq!(splitter.finish(), None);
        let long = vec![b'x'; MAX_PIECE * 2 + 5];
        let pieces = splitter.push(&long);
        assert_eq!(pieces.len(), 2);
        assert!(pieces
            .iter()
            .all(|(bytes, full)| bytes.len() == MAX_PIECE && !full));
        assert_eq!(splitter.push(b"\n"), vec![(b"xxxxx".to_vec(), true)]);
        let exact = [vec![b'y'; MAX_PIECE], b"\n".to_vec()].concat();
        assert_eq!(splitter.push(&exact), vec![(vec![b'y'; MAX_PIECE], true)]);
    }

    #[test]
    fn a_line_reads_back_as_written_in_the_cri_format() {
        let time: Timestamp = "2026-12-05T06:13:08.123456789Z".parse().unwrap();
        let line = encode(time, Source::Stderr, &(b"a b c".to_vec(), true));
        assert_eq!(line, b"2026-12-05T06:13:08.123456789Z stderr F a b c\n");
        let entry = parse(&line[..line.len() - 1]).unwrap();
        assert_eq!(
            entry,
            Entry {
                time,
                source: Source::Stderr,
                full: true,
                content: b"a b c"
            }
        );
        assert_eq!(parse(b"Received request from ::1").map(|e| e.full), None);
        assert_eq!(parse(b"2026-12-05T06:13:08Z stdout X a"), None);
    }

    #[test]
    fn a_log_shows_as_written_with_times_when_asked_and_from_a_time_on() {
        let lines: Vec<Vec<u8>> = [
            encode(at(10), Source::Stdout, &(b"early".to_vec(), true)),
            encode(at(20), Source::Stdout, &(b"pie".to_vec(), false)),
            encode(at(21), Source::Stderr, &(b"ce".to_vec(), true)),
            b"an old raw line\n".to_vec(),
        ]
        .into_iter()
        .map(|mut line| {
            line.pop();
            line
        })
        .collect();
        let shown = |view: View| {
            let mut reader = Reader::new(view);
            let mut out = Vec::new();
            for line in &lines {
                reader.show(line, &mut out);
            }
            String::from_utf8(out).unwrap()
        };
        assert_eq!(shown(View::default()), "early\npiece\nan old raw line\n");
        assert_eq!(
            shown(View {
                timestamps: true,
                since: None
            }),
            "1970-01-01T00:00:10.000000000Z early\n1970-01-01T00:00:20.000000000Z piece\n\
             an old raw line\n"
        );
        assert_eq!(
            shown(View {
                timestamps: false,
                since: Some(at(15))
            }),
            "piece\nan old raw line\n"
        );
    }
}

//! The column layout of Go's `text/tabwriter`, which kubectl prints through.
//!
//! Each cell but the last of a line is "tab-terminated" and padded to the width of its column.
//! A column's width is taken over a *block*: the run of consecutive lines that have a
//! tab-terminated cell in that column. A line with fewer cells ends the block, which is how
//! `kubectl describe` aligns `Labels:` continuation lines with the value above them but lets a
//! heading such as `Containers:` start fresh columns below it. Trailing spaces are trimmed.

/// Lays out `lines` (each a list of cells) with `padding` spaces after the widest cell of every
/// column block; each line ends with `\n`.
pub(crate) fn align(lines: &[Vec<String>], padding: usize) -> String {
    let mut out = String::new();
    let mut widths = Vec::new();
    format(lines, &mut widths, 0, lines.len(), padding, &mut out);
    out
}

/// Splits `text` into lines at `\n` and cells at `\t`, then [`align`]s it.
pub(crate) fn align_text(text: &str, padding: usize) -> String {
    let lines: Vec<Vec<String>> = text
        .strip_suffix('\n')
        .unwrap_or(text)
        .split('\n')
        .map(|line| line.split('\t').map(str::to_owned).collect())
        .collect();
    if text.is_empty() {
        return String::new();
    }
    align(&lines, padding)
}

/// Go's `Writer.format`: finds the blocks of column `widths.len()` between `line0` and
/// `line1`, fixes each block's width and recurses into the next column.
fn format(
    lines: &[Vec<String>],
    widths: &mut Vec<usize>,
    mut line0: usize,
    line1: usize,
    padding: usize,
    out: &mut String,
) {
    let column = widths.len();
    let has_cell = |line: usize| column + 1 < lines[line].len();
    let mut this = line0;
    while this < line1 {
        if !has_cell(this) {
            this += 1;
            continue;
        }
        write_lines(lines, widths, line0, this, out);
        line0 = this;
        let mut width = 0;
        while this < line1 && has_cell(this) {
            width = width.max(display_width(&lines[this][column]) + padding);
            this += 1;
        }
        widths.push(width);
        format(lines, widths, line0, this, padding, out);
        widths.pop();
        line0 = this;
    }
    write_lines(lines, widths, line0, line1, out);
}

/// Writes lines `line0..line1`, padding each cell that has a fixed column width.
fn write_lines(
    lines: &[Vec<String>],
    widths: &[usize],
    line0: usize,
    line1: usize,
    out: &mut String,
) {
    for line in &lines[line0..line1] {
        let start = out.len();
        for (j, cell) in line.iter().enumerate() {
            out.push_str(cell);
            if let Some(&width) = widths.get(j) {
                let pad = width.saturating_sub(display_width(cell));
                out.push_str(&" ".repeat(pad));
            }
        }
        let kept = out[start..].trim_end_matches(' ').len();
        out.truncate(start + kept);
        out.push('\n');
    }
}

/// Go's tabwriter measures cells in runes, not bytes.
fn display_width(cell: &str) -> usize {
    cell.chars().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells(rows: &[&[&str]]) -> Vec<Vec<String>> {
        rows.iter()
            .map(|r| r.iter().map(|c| c.to_string()).collect())
            .collect()
    }

    #[test]
    fn columns_take_the_widest_cell_plus_padding() {
        let lines = cells(&[&["NAME", "AGE"], &["kubia-4jfyf", "5m"]]);
        assert_eq!(align(&lines, 3), "NAME          AGE\nkubia-4jfyf   5m\n");
    }

    #[test]
    fn the_last_cell_is_not_padded_and_trailing_spaces_go() {
        let lines = cells(&[&["a", "b", ""], &["ccc", "d", "e"]]);
        assert_eq!(align(&lines, 2), "a    b\nccc  d  e\n");
    }

    #[test]
    fn a_shorter_line_ends_the_column_block() {
        let text = "Name:\tx\nLabels:\ta=1\n\tb=2\nContainers:\n  web:\n    Image:\tnginx\n";
        assert_eq!(
            align_text(text, 2),
            "Name:    x\nLabels:  a=1\n         b=2\nContainers:\n  web:\n    Image:  nginx\n"
        );
    }

    #[test]
    fn deeper_columns_align_only_where_they_exist() {
        let text = "Port:\t<unset>\t80/TCP\nTargetPort:\t8080/TCP\nIP:\t10.0.0.1\n";
        assert_eq!(
            align_text(text, 2),
            "Port:        <unset>  80/TCP\nTargetPort:  8080/TCP\nIP:          10.0.0.1\n"
        );
    }

    #[test]
    fn widths_count_characters_not_bytes() {
        let lines = cells(&[&["é", "x"], &["ab", "y"]]);
        assert_eq!(align(&lines, 1), "é  x\nab y\n");
    }

    #[test]
    fn empty_input_is_empty_output() {
        assert_eq!(align(&[], 3), "");
        assert_eq!(align_text("", 3), "");
    }
}

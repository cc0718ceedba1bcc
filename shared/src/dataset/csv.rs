//! The original CSV release (`sapientinc/maze-30x30-hard-1k`: `train.csv`, `test.csv`).
//!
//! Each file has a header row, which the reference builder skips without reading, then rows
//! unpacked by position as `source, question, answer, rating`. Question and answer are
//! row-major strings of a square grid (`n = sqrt(len)`). Only question and answer are used.
//!
//! Policy: answers are imported as given (the reference never relabels), but every row is
//! checked with [`check_example`], and the first malformed row stops the import with an error
//! naming the file, the row and the problem (and how many other rows are bad). Lines, grids
//! and the row count are bounded ([`MAX_LINE`], [`MAX_CELLS`], [`MAX_ROWS`]) so that a crafted
//! file is an error, not a reader that grows without end.

use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;

use super::check::{ExampleError, check_example};
use super::{DatasetError, SplitData};
use crate::atomic;
use crate::maze::{Cell, Grid, MAX_CELLS};

/// Longest line accepted: two grids of [`MAX_CELLS`] and room for the other fields.
pub const MAX_LINE: usize = 2 * MAX_CELLS + 4096;
/// Most data rows accepted (the release has 1000 per file).
pub const MAX_ROWS: usize = 10_000_000;

/// The header our exporter writes (the reference ignores it; these are the likely names).
pub const CSV_HEADER: [&str; 4] = ["source", "question", "answer", "rating"];

/// Errors reading or writing a CSV release file.
#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    /// The file is not valid CSV (or not UTF-8) at some point.
    #[error("{file}: {message}")]
    Syntax { file: String, message: String },
    /// A row is malformed.
    #[error("{file} row {row} (line {line}): {problem}{}", more_rows(*.more))]
    Row {
        file: String,
        /// One-based data row (the header is not counted).
        row: usize,
        /// One-based line of the file where the row starts.
        line: u64,
        problem: RowProblem,
        /// How many later rows are malformed too.
        more: usize,
    },
    /// The file has a header but no rows.
    #[error("{file}: no data rows after the header")]
    Empty { file: String },
    /// Exporting a split whose examples are not square grids.
    #[error(transparent)]
    Dataset(#[from] DatasetError),
}

fn more_rows(more: usize) -> String {
    match more {
        0 => String::new(),
        1 => " (and 1 more bad row)".into(),
        n => format!(" (and {n} more bad rows)"),
    }
}

/// What is wrong with one CSV row.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowProblem {
    #[error("expected 4 fields (source, question, answer, rating), found {0}")]
    FieldCount(usize),
    #[error("{0}")]
    Example(#[from] ExampleError),
    #[error("answer has {answer} characters but the question has {question}")]
    AnswerLength { question: usize, answer: usize },
    #[error("grid is {found}x{found} but the first row's is {expected}x{expected}")]
    SizeChanged { expected: usize, found: usize },
    #[error("question has {chars} characters, more than the {} cells of the largest maze", MAX_CELLS)]
    TooLarge { chars: usize },
}

/// A CSV file imported as a split.
#[derive(Clone, Debug, PartialEq)]
pub struct CsvImport {
    /// The examples, one puzzle and group each, as the reference builder lays them out.
    pub split: SplitData,
    /// How many answers equal the benchmark's lex-min label.
    pub follows_rule: usize,
}

/// Reads a CSV release file (see the module docs for the format and checks).
pub fn read_csv(path: &Path) -> Result<CsvImport, CsvError> {
    let file = fs::File::open(path).map_err(|source| CsvError::Io { path: path.display().to_string(), source })?;
    read_csv_from(file, &path.display().to_string())
}

/// Reads CSV release rows from any reader; `name` names the source in errors.
pub fn read_csv_from<R: Read>(reader: R, name: &str) -> Result<CsvImport, CsvError> {
    // `flexible`: a row with the wrong number of fields gets our own message, not the
    // crate's. The header is skipped unread, as the reference does.
    let reader = LineLimit { inner: reader, run: 0, line: 1 };
    let mut reader = ::csv::ReaderBuilder::new().has_headers(true).flexible(true).from_reader(reader);
    let mut examples = Vec::new();
    let mut follows_rule = 0;
    let mut side = None;
    let mut first_bad: Option<(usize, u64, RowProblem)> = None;
    let mut more = 0;
    let mut record = ::csv::StringRecord::new();
    let mut row = 0;
    loop {
        match reader.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(CsvError::Syntax { file: name.to_string(), message: e.to_string() }),
        }
        row += 1;
        if row > MAX_ROWS {
            return Err(CsvError::Syntax { file: name.to_string(), message: format!("more than {MAX_ROWS} rows") });
        }
        let line = record.position().map_or(0, |p| p.line());
        match parse_row(&record, &mut side) {
            Ok((question, answer, rule)) => {
                follows_rule += usize::from(rule);
                examples.push((question.tokens(), answer.tokens()));
            }
            Err(problem) if first_bad.is_none() => first_bad = Some((row, line, problem)),
            Err(_) => more += 1,
        }
    }
    if let Some((row, line, problem)) = first_bad {
        return Err(CsvError::Row { file: name.to_string(), row, line, problem, more });
    }
    let Some(side) = side else {
        return Err(CsvError::Empty { file: name.to_string() });
    };
    Ok(CsvImport { split: SplitData::from_examples(side * side, examples), follows_rule })
}

/// Parses and checks one row; `side` is the grid side fixed by the first good row.
fn parse_row(record: &::csv::StringRecord, side: &mut Option<usize>) -> Result<(Grid, Grid, bool), RowProblem> {
    if record.len() != 4 {
        return Err(RowProblem::FieldCount(record.len()));
    }
    if record[1].len() > MAX_CELLS {
        return Err(RowProblem::TooLarge { chars: record[1].chars().count() });
    }
    let question = Grid::parse_square(&record[1]).map_err(ExampleError::Question)?;
    let (q_len, a_len) = (record[1].chars().count(), record[2].chars().count());
    if a_len != q_len {
        return Err(RowProblem::AnswerLength { question: q_len, answer: a_len });
    }
    let answer = Grid::parse_square(&record[2]).map_err(ExampleError::Answer)?;
    let check = check_example(&question, &answer)?;
    match *side {
        Some(expected) if expected != question.rows() => {
            return Err(RowProblem::SizeChanged { expected, found: question.rows() });
        }
        _ => *side = Some(question.rows()),
    }
    Ok((question, answer, check.follows_rule))
}

/// Fails a read once a line runs past [`MAX_LINE`] bytes, so that a file without line breaks
/// is an error rather than one record the size of the file.
struct LineLimit<R> {
    inner: R,
    /// Bytes since the last line break.
    run: usize,
    /// One-based line being read.
    line: u64,
}

impl<R: Read> Read for LineLimit<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        for &b in &buf[..n] {
            if b == b'\n' {
                self.run = 0;
                self.line += 1;
            } else {
                self.run += 1;
                if self.run > MAX_LINE {
                    let message = format!("line {} is longer than {MAX_LINE} bytes", self.line);
                    return Err(io::Error::new(io::ErrorKind::InvalidData, message));
                }
            }
        }
        Ok(n)
    }
}

/// Writes `split` as a CSV release file (atomically): header `source,question,answer,rating`,
/// `source` as given, rating the label's path length in moves (the likely meaning of the
/// release's column, which nothing reads).
pub fn write_csv(path: &Path, split: &SplitData, source: &str) -> Result<(), CsvError> {
    let mut bytes = Vec::new();
    write_csv_to(&mut bytes, split, source)?;
    atomic::write_file(path, &bytes).map_err(|e| CsvError::Io { path: path.display().to_string(), source: e })
}

/// Writes `split` in the CSV release format to any writer.
pub fn write_csv_to<W: Write>(writer: W, split: &SplitData, source: &str) -> Result<(), CsvError> {
    let io_err = |e: ::csv::Error| CsvError::Syntax { file: "CSV output".into(), message: e.to_string() };
    let mut w = ::csv::WriterBuilder::new().from_writer(writer);
    w.write_record(CSV_HEADER).map_err(io_err)?;
    for i in 0..split.len() {
        let (question, answer) = split.grids(i)?;
        let moves = answer.cells().iter().filter(|&&c| c == Cell::Path).count() + 1;
        w.write_record([
            source,
            question.to_row_major().as_str(),
            answer.to_row_major().as_str(),
            moves.to_string().as_str(),
        ])
        .map_err(io_err)?;
    }
    w.flush().map_err(|e| CsvError::Syntax { file: "CSV output".into(), message: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::read_split;
    use crate::maze::label;
    use std::path::PathBuf;

    fn benchmark_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/maze-30x30-hard-1k")
    }

    #[test]
    fn round_trips_the_real_benchmark() {
        let tmp = tempfile::tempdir().unwrap();
        for name in ["train", "test"] {
            let real = read_split(&benchmark_dir().join(name)).unwrap();
            let path = tmp.path().join(format!("{name}.csv"));
            write_csv(&path, &real, "maze-30x30-hard-1k").unwrap();
            let text = fs::read_to_string(&path).unwrap();
            assert!(text.starts_with("source,question,answer,rating\n"), "header");
            assert_eq!(text.lines().count(), 1001);
            let imported = read_csv(&path).unwrap();
            assert_eq!(imported.split, real, "{name}: identical arrays after export and import");
            assert_eq!(imported.follows_rule, 1000);
        }
    }

    /// The good row of [`csv_with`]: a 3x3 maze with its label.
    fn good_row() -> String {
        let q = Grid::parse_lines("S  \n # \n  G\n").unwrap();
        format!("x,{},{},4", q.to_row_major(), label(&q).unwrap().to_row_major())
    }

    /// A small CSV of 3 rows (3x3 mazes), good except the `bad` (1-based row, text) ones.
    fn csv_with(bad: &[(usize, &str)]) -> String {
        let mut rows = vec!["source,question,answer,rating".to_string()];
        for r in 1..=3 {
            rows.push(bad.iter().find(|(b, _)| *b == r).map_or_else(good_row, |(_, t)| t.to_string()));
        }
        rows.join("\n") + "\n"
    }

    fn import_err(text: &str) -> String {
        read_csv_from(text.as_bytes(), "train.csv").unwrap_err().to_string()
    }

    #[test]
    fn imports_quoted_fields_and_keeps_answers_as_given() {
        assert_eq!(good_row(), "x,S   #   G,S  o# ooG,4");
        let imported = read_csv_from(csv_with(&[]).as_bytes(), "t.csv").unwrap();
        assert_eq!((imported.split.len(), imported.split.seq_len, imported.follows_rule), (3, 9, 3));
        // Another shortest path than the lex-min one is kept as given and counted as off-rule.
        let text = "source,question,answer,rating\n\"x\",\"S   #   G\",\"Soo #o  G\",\"4\"\n";
        let imported = read_csv_from(text.as_bytes(), "t.csv").unwrap();
        assert_eq!((imported.split.len(), imported.follows_rule), (1, 0));
        assert_eq!(imported.split.label(0), Grid::parse_square("Soo #o  G").unwrap().tokens());
    }

    #[test]
    fn rejects_malformed_rows_naming_row_and_problem() {
        let q4 = Grid::parse_lines("S   \n    \n    \n   G\n").unwrap();
        let four = format!("x,{},{},6", q4.to_row_major(), label(&q4).unwrap().to_row_major());
        let cases = [
            ("x,S  ?#   G,S  o#   G,4", "question: unknown character '?' at row 1 col 0"),
            ("x,S   #   G,S  x#   G,4", "answer: unknown character 'x' at row 1 col 0"),
            ("x,S   #   G", "expected 4 fields (source, question, answer, rating), found 2"),
            ("x,S   #   G ,S   #   G ,4", "question: a row-major maze must have a square number of cells, found 10"),
            ("x,    #   G,    #   G,4", "question: no start 'S'"),
            ("x,S G #   G,S G #   G,4", "question: 2 goals 'G', expected exactly one"),
            (
                "x,S o #   G,S o #   G,4",
                "question: path cell 'o' at row 0 col 2 in a puzzle (only answers have path cells)",
            ),
            ("x,S   #   G,S  ,4", "answer has 3 characters but the question has 9"),
            (
                "x,S   #   G,S#  #   G,4",
                "not consistent with the question at row 0 col 1: question has ' ', answer has '#'",
            ),
            (
                "x,S   #   G,   S#   G,4",
                "not consistent with the question at row 0 col 0: question has 'S', answer has ' '",
            ),
            ("x,S# #    G,S# #oo  G,4", "unsolvable maze: no path from 'S' to 'G'"),
            ("x,S   #   G,S   #   G,4", "answer's 'o' cells do not form one path from 'S' to 'G'"),
            ("x,S   #   G,Sooo#o  G,4", "answer's 'o' cells do not form one path"),
            (four.as_str(), "grid is 4x4 but the first row's is 3x3"),
        ];
        for (bad, expected) in cases {
            let err = import_err(&csv_with(&[(2, bad)]));
            assert!(err.starts_with("train.csv row 2 (line 3): "), "{err}");
            assert!(err.contains(expected), "row {bad:?}: got {err:?}, want {expected:?}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
        // The first bad row is named and the others counted.
        let err = import_err(&csv_with(&[(1, "x,S,S,1"), (3, "x,S")]));
        assert_eq!(err, "train.csv row 1 (line 2): question: no goal 'G' (and 1 more bad row)");
        assert_eq!(import_err("source,question,answer,rating\n"), "train.csv: no data rows after the header");
        // A question longer than the largest maze, and a line longer than any row can be.
        let big = format!("x,{},S,1", "S".repeat(MAX_CELLS + 1));
        let err = import_err(&csv_with(&[(1, big.as_str())]));
        assert!(err.contains("row 1 (line 2): question has 65537 characters, more than the 65536 cells"), "{err}");
        let err = import_err(&format!("source,question,answer,rating\n{}", "x".repeat(MAX_LINE + 1)));
        assert_eq!(err, format!("train.csv: line 2 is longer than {MAX_LINE} bytes"));
        let not_utf8 = [b"source,question,answer,rating\nx,".as_slice(), &[0xff, 0xfe], b",a,1\n"].concat();
        let err = read_csv_from(not_utf8.as_slice(), "train.csv").unwrap_err();
        assert!(matches!(err, CsvError::Syntax { .. }), "{err}");
        assert!(matches!(read_csv(Path::new("/nonexistent/train.csv")), Err(CsvError::Io { .. })));
    }
}

//! Checking the audit log's chain: every line must hash to the hash it
//! carries, follow the line before it (`prev` is that line's hash, `seq`
//! one more), and the first must be the anchor. Each break is named by its
//! line number (counted from 1).

use std::io::BufRead;

use serde::Serialize;
use serde_json::Value;

use super::log::{digest, split_hash, MAGIC, VERSION, ZERO};

/// One break in the chain.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Problem {
    /// The line where the chain breaks, from 1.
    pub line: u64,
    pub why: String,
}

/// What a check found.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    /// Lines read.
    pub lines: u64,
    /// The last line's hash: a copy kept elsewhere shows later truncation.
    pub head: Option<String>,
    pub problems: Vec<Problem>,
}

/// Checks the log read from `r`.
pub(crate) fn verify(r: impl BufRead) -> std::io::Result<Report> {
    let mut report = Report {
        lines: 0,
        head: None,
        problems: Vec::new(),
    };
    // The previous line's hash and seq, when it could be read.
    let mut prev: Option<(String, u64)> = None;
    for (i, line) in r.split(b'\n').enumerate() {
        let line = line?;
        let n = i as u64 + 1;
        report.lines = n;
        let mut problem = |why: String| report.problems.push(Problem { line: n, why });
        let Ok(text) = std::str::from_utf8(&line) else {
            problem("not UTF-8: the line was edited".into());
            prev = None;
            continue;
        };
        let (Some((body, claimed)), Ok(v)) =
            (split_hash(text), serde_json::from_str::<Value>(text))
        else {
            problem("not a sealed JSON entry: the line was edited or cut".into());
            prev = None;
            continue;
        };
        let actual = digest(&body);
        if actual != claimed {
            problem("its content does not match its hash: the line was edited".into());
        }
        let seq = v["seq"].as_u64();
        let link = v["prev"].as_str().unwrap_or_default();
        match &prev {
            None if n == 1
                && (v["magic"] != MAGIC
                    || v["version"] != VERSION
                    || seq != Some(0)
                    || link != ZERO) =>
            {
                problem(format!(
                    "it is not the anchor of an audit log ({MAGIC} version {VERSION}): the first lines were removed or reordered"
                ));
            }
            None => {}
            Some((hash, s)) => {
                if link != hash {
                    problem(format!(
                        "it does not follow line {} (its prev hash is not that line's): a line before it was removed, or lines were reordered",
                        n - 1
                    ));
                } else if seq != Some(s + 1) {
                    problem(format!("its seq is {seq:?}, not {}", s + 1));
                }
            }
        }
        prev = Some((claimed.to_owned(), seq.unwrap_or_default()));
        report.head = Some(claimed.to_owned());
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::super::log::Log;
    use super::*;

    fn log_with(n: usize) -> (tempfile::TempDir, std::path::PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("audit.log");
        let log = Log::new(&p);
        for i in 0..n {
            let mut m = serde_json::Map::new();
            m.insert("event".into(), serde_json::json!(format!("entry{i}")));
            log.append(m, true).unwrap();
        }
        (t, p)
    }

    fn check(p: &std::path::Path) -> Report {
        verify(std::io::BufReader::new(std::fs::File::open(p).unwrap())).unwrap()
    }

    fn lines(p: &std::path::Path) -> Vec<String> {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn write(p: &std::path::Path, l: &[String]) {
        std::fs::write(p, l.join("\n") + "\n").unwrap();
    }

    #[test]
    fn an_intact_log_verifies() {
        let (_t, p) = log_with(5);
        let r = check(&p);
        assert_eq!(r.lines, 6);
        assert!(r.problems.is_empty(), "{:?}", r.problems);
    }

    #[test]
    fn an_edited_line_is_named() {
        let (_t, p) = log_with(5);
        let mut l = lines(&p);
        l[3] = l[3].replace("\"entry2\"", "\"entry9\"");
        write(&p, &l);
        let r = check(&p);
        assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
        assert_eq!(r.problems[0].line, 4);
    }

    #[test]
    fn a_removed_or_reordered_line_is_named() {
        let (_t, p) = log_with(5);
        let mut l = lines(&p);
        l.remove(2);
        write(&p, &l);
        let r = check(&p);
        assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
        assert_eq!(r.problems[0].line, 3);

        let (_t, p) = log_with(5);
        let mut l = lines(&p);
        l.swap(2, 3);
        write(&p, &l);
        let r = check(&p);
        assert_eq!(r.problems[0].line, 3, "{:?}", r.problems);

        let (_t, p) = log_with(2);
        let mut l = lines(&p);
        l.remove(0);
        write(&p, &l);
        assert_eq!(check(&p).problems[0].line, 1);
    }

    #[test]
    fn concurrent_appends_keep_the_chain() {
        let (_t, p) = log_with(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    let log = Log::new(&p);
                    for i in 0..25 {
                        log.append(serde_json::Map::new(), i % 2 == 0).unwrap();
                    }
                });
            }
        });
        let r = check(&p);
        assert_eq!(r.lines, 101);
        assert!(r.problems.is_empty(), "{:?}", r.problems);
    }
}

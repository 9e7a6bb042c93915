//! The content of the plugin's PostgreSQL items (see the README):
//!
//! A table item:
//!
//! ```text
//! ATTACHE-PG-TABLE 1\n
//! {"server_version": ..., "database": ..., "snapshot": ..., "definition": {TableDef}}\n
//! <the rows, exactly as COPY ... TO STDOUT (text format) produced them>
//! \.\n
//! {"rows": N}\n
//! ```
//!
//! Text-format COPY escapes every backslash in a value, so no row line is
//! ever exactly `\.`: the line ends the rows unambiguously, and the trailer
//! lets restore check that every row arrived.
//!
//! A database item is one JSON object ([`DatabaseHeader`]) after the line
//! `ATTACHE-PG-DATABASE 1`.

use serde::{Deserialize, Serialize};

use super::schema::TableDef;

pub(crate) const TABLE_MAGIC: &str = "ATTACHE-PG-TABLE 1";
pub(crate) const DATABASE_MAGIC: &str = "ATTACHE-PG-DATABASE 1";
pub(crate) const END_OF_ROWS: &[u8] = b"\\.\n";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct TableHeader {
    pub server_version: String,
    pub database: String,
    /// The exported snapshot the rows were read under.
    pub snapshot: String,
    /// The columns in the COPY data, in order.
    pub copy_columns: Vec<String>,
    pub definition: TableDef,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct TableTrailer {
    pub rows: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct DatabaseHeader {
    pub server_version: String,
    pub database: String,
    pub encoding: String,
    pub snapshot: String,
    /// Schemas the backed-up tables live in.
    pub schemas: Vec<String>,
    /// Ids of the table items that follow.
    pub tables: Vec<String>,
}

pub(crate) fn table_prologue(h: &TableHeader) -> Vec<u8> {
    let mut out = format!("{TABLE_MAGIC}\n").into_bytes();
    out.extend_from_slice(serde_json::to_string(h).expect("serializable").as_bytes());
    out.push(b'\n');
    out
}

pub(crate) fn table_epilogue(rows: u64) -> Vec<u8> {
    let mut out = END_OF_ROWS.to_vec();
    out.extend_from_slice(
        serde_json::to_string(&TableTrailer { rows })
            .expect("serializable")
            .as_bytes(),
    );
    out.push(b'\n');
    out
}

pub(crate) fn database_content(h: &DatabaseHeader) -> Vec<u8> {
    let mut out = format!("{DATABASE_MAGIC}\n").into_bytes();
    out.extend_from_slice(
        serde_json::to_string_pretty(h)
            .expect("serializable")
            .as_bytes(),
    );
    out.push(b'\n');
    out
}

pub(crate) fn parse_database(content: &[u8]) -> Result<DatabaseHeader, String> {
    let s = std::str::from_utf8(content).map_err(|_| "database item is not UTF-8")?;
    let body = s
        .strip_prefix(DATABASE_MAGIC)
        .and_then(|b| b.strip_prefix('\n'))
        .ok_or("not a PostgreSQL database item (bad magic line)")?;
    serde_json::from_str(body).map_err(|e| format!("bad database item: {e}"))
}

/// Reads a table item piece by piece: the header first, then the rows in
/// whole lines, then the trailer.
pub(crate) struct TableReader {
    buf: Vec<u8>,
    state: State,
    pub trailer: Option<TableTrailer>,
}

#[derive(Debug, PartialEq)]
enum State {
    Magic,
    Header,
    Rows,
    Trailer,
}

/// What feeding a piece of content produced.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Fed {
    pub header: Option<TableHeader>,
    /// Complete row lines, ready for COPY FROM STDIN.
    pub rows: Vec<u8>,
}

impl Default for TableReader {
    fn default() -> Self {
        Self::new()
    }
}

impl TableReader {
    pub(crate) fn new() -> TableReader {
        TableReader {
            buf: Vec::new(),
            state: State::Magic,
            trailer: None,
        }
    }

    /// Takes the next piece of content.
    pub(crate) fn feed(&mut self, piece: &[u8]) -> Result<Fed, String> {
        self.buf.extend_from_slice(piece);
        let mut fed = Fed::default();
        loop {
            match self.state {
                State::Magic | State::Header => {
                    let Some(nl) = self.buf.iter().position(|&b| b == b'\n') else {
                        if self.buf.len() > 256 << 20 {
                            return Err("table header longer than 256 MiB".into());
                        }
                        return Ok(fed);
                    };
                    let line: Vec<u8> = self.buf.drain(..=nl).collect();
                    let line = &line[..line.len() - 1];
                    if self.state == State::Magic {
                        if line != TABLE_MAGIC.as_bytes() {
                            return Err("not a PostgreSQL table item (bad magic line)".into());
                        }
                        self.state = State::Header;
                    } else {
                        let h: TableHeader = serde_json::from_slice(line)
                            .map_err(|e| format!("bad table header: {e}"))?;
                        fed.header = Some(h);
                        self.state = State::Rows;
                    }
                }
                State::Rows => {
                    // Hand on whole lines up to the end marker.
                    let mut start = 0;
                    let mut cut = None;
                    while let Some(off) = self.buf[start..].iter().position(|&b| b == b'\n') {
                        let end = start + off + 1;
                        if &self.buf[start..end] == END_OF_ROWS {
                            cut = Some((start, end));
                            break;
                        }
                        start = end;
                    }
                    match cut {
                        Some((rows_end, marker_end)) => {
                            fed.rows.extend_from_slice(&self.buf[..rows_end]);
                            self.buf.drain(..marker_end);
                            self.state = State::Trailer;
                        }
                        None => {
                            fed.rows.extend_from_slice(&self.buf[..start]);
                            self.buf.drain(..start);
                            return Ok(fed);
                        }
                    }
                }
                State::Trailer => {
                    let Some(nl) = self.buf.iter().position(|&b| b == b'\n') else {
                        return Ok(fed);
                    };
                    let t: TableTrailer = serde_json::from_slice(&self.buf[..nl])
                        .map_err(|e| format!("bad table trailer: {e}"))?;
                    self.trailer = Some(t);
                    self.buf.drain(..=nl);
                    if !self.buf.is_empty() {
                        return Err("data after the table trailer".into());
                    }
                    return Ok(fed);
                }
            }
        }
    }

    /// Checks that the content ended where it should.
    pub(crate) fn finish(&self) -> Result<TableTrailer, String> {
        match (&self.state, &self.trailer) {
            (State::Trailer, Some(t)) if self.buf.is_empty() => Ok(t.clone()),
            _ => Err("the table item ends before its end-of-rows marker and trailer".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> TableHeader {
        TableHeader {
            server_version: "15.8".into(),
            database: "shop".into(),
            snapshot: "00000003-00000002-1".into(),
            copy_columns: vec!["id".into(), "note".into()],
            definition: TableDef {
                schema: "public".into(),
                table: "t".into(),
                qualified: "public.t".into(),
                columns: vec![],
                sequences: vec![],
                constraints: vec![],
                indexes: vec![],
            },
        }
    }

    #[test]
    fn round_trips_in_any_pieces() {
        let rows = b"1\tplain\n2\t\\\\.\n3\t\\N\n4\tline\\nbreak\n".to_vec();
        let mut content = table_prologue(&header());
        content.extend_from_slice(&rows);
        content.extend_from_slice(&table_epilogue(4));
        for piece in [1usize, 2, 3, 7, 64, 4096] {
            let mut r = TableReader::new();
            let mut got_rows = Vec::new();
            let mut got_header = None;
            for chunk in content.chunks(piece) {
                let fed = r.feed(chunk).unwrap();
                if fed.header.is_some() {
                    got_header = fed.header;
                }
                got_rows.extend_from_slice(&fed.rows);
            }
            assert_eq!(got_header.unwrap(), header());
            assert_eq!(got_rows, rows, "piece size {piece}");
            assert_eq!(r.finish().unwrap().rows, 4);
        }
    }

    #[test]
    fn refuses_truncated_and_foreign_content() {
        let mut content = table_prologue(&header());
        content.extend_from_slice(b"1\tx\n");
        let mut r = TableReader::new();
        r.feed(&content).unwrap();
        assert!(r.finish().is_err());
        assert!(TableReader::new().feed(b"SQLite format 3\n").is_err());
        let db = DatabaseHeader {
            server_version: "15".into(),
            database: "d".into(),
            encoding: "UTF8".into(),
            snapshot: "s".into(),
            schemas: vec!["public".into()],
            tables: vec![],
        };
        assert_eq!(parse_database(&database_content(&db)).unwrap(), db);
        assert!(parse_database(b"{}").is_err());
    }
}

//! Line-oriented input for `translate`: raw bytes split at "\n" (a trailing
//! "\r" dropped), each line decoded as UTF-8 on its own so that one bad line
//! loses nothing else.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use transformer_kernels::{Error, Result};

/// One input line.
pub enum Line {
    /// Valid UTF-8 text, without its line ending.
    Text(String),
    /// The line's bytes are not valid UTF-8.
    BadUtf8,
}

/// Reads lines from a file or standard input, in windows.
pub struct LineReader {
    reader: Box<dyn BufRead>,
    path: PathBuf,
    next_line: usize,
    done: bool,
}

impl LineReader {
    /// Lines of `path`, or of standard input when `None`.
    ///
    /// # Errors
    /// [`Error::Io`] naming the file when it cannot be opened.
    pub fn open(path: Option<&Path>) -> Result<Self> {
        let (reader, path): (Box<dyn BufRead>, PathBuf) = match path {
            Some(p) => {
                let f = std::fs::File::open(p).map_err(|e| Error::io(p, e))?;
                if f.metadata().is_ok_and(|m| m.is_dir()) {
                    return Err(Error::io(
                        p,
                        std::io::Error::new(std::io::ErrorKind::InvalidInput, "is a directory"),
                    ));
                }
                (Box::new(std::io::BufReader::new(f)), p.to_path_buf())
            }
            None => (
                Box::new(std::io::BufReader::new(std::io::stdin())),
                PathBuf::from("<stdin>"),
            ),
        };
        Ok(Self {
            reader,
            path,
            next_line: 1,
            done: false,
        })
    }

    /// Up to `max` further lines as `(1-based line number, line)`; empty at
    /// the end of the input.
    ///
    /// # Errors
    /// [`Error::Io`] naming the input when reading fails.
    pub fn next_window(&mut self, max: usize) -> Result<Vec<(usize, Line)>> {
        let mut out = Vec::new();
        let mut buf = Vec::new();
        while !self.done && out.len() < max {
            buf.clear();
            let n = self
                .reader
                .read_until(b'\n', &mut buf)
                .map_err(|e| Error::io(&self.path, e))?;
            if n == 0 {
                self.done = true;
                break;
            }
            if buf.last() == Some(&b'\n') {
                buf.pop();
                if buf.last() == Some(&b'\r') {
                    buf.pop();
                }
            }
            let line = match String::from_utf8(std::mem::take(&mut buf)) {
                Ok(s) => Line::Text(s),
                Err(_) => Line::BadUtf8,
            };
            out.push((self.next_line, line));
            self.next_line += 1;
        }
        Ok(out)
    }
}

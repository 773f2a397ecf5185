//! Reading a JSON-lines file that a crash may have cut in the middle of a write.

use std::io;
use std::path::Path;

/// The file's bytes (none when it does not exist yet) and the length of its complete lines: a
/// torn last line, left by a crash in the middle of a write, lies past it. Bytes, not text: a
/// torn line may end in the middle of a character.
pub fn read_complete(path: &Path) -> io::Result<(Vec<u8>, usize)> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    Ok((bytes, complete))
}

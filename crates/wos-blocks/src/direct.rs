//! Writing around the page cache (`O_DIRECT`).
//!
//! Chunk files and mount spools are written once and read at most once
//! soon after (readers on other nodes keep their own copies in their chunk
//! caches). Copying them through the page cache costs CPU, which on virtual
//! machines can far exceed the disk write itself (on the development VM:
//! 280 MB/s for a buffered write with fsync, 1.5 GB/s direct), and pushes
//! out pages that are read. So the whole blocks of a large write go
//! straight to the disk from an aligned buffer, and only the pieces that
//! are not whole blocks go through the page cache; an fsync covers both,
//! and the kernel keeps the two coherent for readers.

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

/// Offsets, lengths and buffer addresses of direct writes are multiples of
/// this (the largest logical block size of common disks).
const ALIGN: u64 = 4096;
/// Bytes copied into the aligned buffer and written at a time.
const PIECE: usize = 1 << 20;
/// Smaller writes go through the page cache: a direct write of a few
/// kilobytes saves nothing.
pub const DIRECT_MIN: usize = 64 << 10;

thread_local! {
    /// Reused, so that writing touches no fresh memory.
    static BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A second descriptor on `path` for direct writes; `None` if it cannot be
/// had (a file system without them, such as tmpfs): then everything goes
/// through the page cache, and the ordinary descriptor reports any real
/// problem with the file.
pub fn open(path: &Path) -> io::Result<Option<File>> {
    Ok(OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .ok())
}

/// Writes `bytes` at `offset` of one file open twice: the whole blocks
/// through `direct` (see [`open`]; none: everything through `buffered`),
/// the rest through `buffered`.
pub fn write_at(
    direct: Option<&File>,
    buffered: &File,
    offset: u64,
    bytes: &[u8],
) -> io::Result<()> {
    let end = offset + bytes.len() as u64;
    let first = offset.next_multiple_of(ALIGN);
    let last = end / ALIGN * ALIGN;
    let Some(direct) = direct.filter(|_| bytes.len() >= DIRECT_MIN && first < last) else {
        return buffered.write_all_at(bytes, offset);
    };
    let at = |pos: u64| (pos - offset) as usize;
    buffered.write_all_at(&bytes[..at(first)], offset)?;
    let done = write_blocks(direct, first, &bytes[at(first)..at(last)])?;
    buffered.write_all_at(&bytes[at(first + done)..], first + done)
}

/// Writes whole blocks at the aligned `offset`; returns how many bytes went
/// out directly (fewer, down to none, if the disk's blocks turn out larger
/// than [`ALIGN`]: the caller writes the rest through the page cache).
fn write_blocks(direct: &File, offset: u64, bytes: &[u8]) -> io::Result<u64> {
    BUFFER.with(|cell| {
        let mut buf = cell.borrow_mut();
        if buf.len() < PIECE + ALIGN as usize {
            buf.resize(PIECE + ALIGN as usize, 0);
        }
        let start = buf.as_ptr().align_offset(ALIGN as usize);
        let aligned = &mut buf[start..start + PIECE];
        let mut done = 0;
        while done < bytes.len() {
            let n = (bytes.len() - done).min(PIECE);
            aligned[..n].copy_from_slice(&bytes[done..done + n]);
            match direct.write_all_at(&aligned[..n], offset + done as u64) {
                Ok(()) => done += n,
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => break,
                Err(e) => return Err(e),
            }
        }
        Ok(done as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_offset_and_length_is_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        let direct = open(&path).unwrap();
        if direct.is_none() {
            eprintln!("note: no O_DIRECT on {}", dir.path().display());
        }
        let mut expected = vec![];
        let pieces = [
            (0, ALIGN as usize),
            (ALIGN, 3 * PIECE + 1),
            (17, 100),
            (5000, PIECE - 1),
            (2 * ALIGN + 3, 200 << 10),
        ];
        for (i, (offset, len)) in pieces.into_iter().enumerate() {
            let bytes: Vec<u8> = (0..len).map(|j| ((i + j * 7) % 251) as u8).collect();
            write_at(direct.as_ref(), &file, offset, &bytes).unwrap();
            let end = offset as usize + len;
            if expected.len() < end {
                expected.resize(end, 0);
            }
            expected[offset as usize..end].copy_from_slice(&bytes);
            assert!(
                std::fs::read(&path).unwrap() == expected,
                "after writing {len} bytes at {offset}"
            );
        }
    }
}

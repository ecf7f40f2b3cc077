//! Cutting a stream into chunks.

use std::io::Read;

use crate::error::{Error, Result};
use crate::id::ChunkId;

/// The size of a chunk: files are cut into fixed 4 MiB pieces, the last one
/// possibly shorter. Fixed-size cutting keeps a byte offset's chunk a matter
/// of division, which ranged reads and partial writes rely on.
pub const CHUNK_SIZE: usize = 4 << 20;

/// Cuts a stream into `(ChunkId, bytes)` of [`CHUNK_SIZE`] bytes (the last
/// one shorter), holding at most one chunk in memory at a time.
///
/// An empty stream gives no chunks: an empty file is an empty list. A read
/// error is yielded once and ends the iteration, since what follows a broken
/// stream cannot be cut at the right offsets.
pub struct Chunker<R> {
    reader: R,
    done: bool,
}

impl<R: Read> Chunker<R> {
    pub fn new(reader: R) -> Chunker<R> {
        Chunker {
            reader,
            done: false,
        }
    }

    /// Reads up to one chunk; fewer bytes only at the end of the stream.
    fn read_chunk(&mut self) -> std::io::Result<Vec<u8>> {
        let mut buf = Vec::with_capacity(CHUNK_SIZE);
        // `read_to_end` retries on `Interrupted` and keeps reading short
        // reads (pipes, sockets) until the chunk is full or the stream ends.
        (&mut self.reader)
            .take(CHUNK_SIZE as u64)
            .read_to_end(&mut buf)?;
        Ok(buf)
    }
}

impl<R: Read> Iterator for Chunker<R> {
    type Item = Result<(ChunkId, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.read_chunk() {
            Err(source) => {
                self.done = true;
                Some(Err(Error::Read { source }))
            }
            Ok(buf) if buf.is_empty() => {
                self.done = true;
                None
            }
            Ok(buf) => {
                // A short chunk can only be the last one.
                self.done = buf.len() < CHUNK_SIZE;
                Some(Ok((ChunkId::of(&buf), buf)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    /// Deterministic, incompressible-looking test data.
    fn data(len: usize) -> Vec<u8> {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// A reader that hands out at most 1000 bytes per call, like a socket.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(1000).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn twenty_mib_gives_five_chunks() {
        let input = data(20 << 20);
        let chunks: Vec<_> = Chunker::new(&input[..]).collect::<Result<_>>().unwrap();
        assert_eq!(chunks.len(), 5);
        let mut joined = Vec::new();
        for (id, bytes) in &chunks {
            assert_eq!(bytes.len(), CHUNK_SIZE);
            assert_eq!(*id, ChunkId::of(bytes));
            joined.extend_from_slice(bytes);
        }
        assert_eq!(joined, input);
    }

    #[test]
    fn last_chunk_is_shorter_and_short_reads_fill_chunks() {
        let input = data(CHUNK_SIZE + 12345);
        let chunks: Vec<_> = Chunker::new(Trickle(&input))
            .collect::<Result<_>>()
            .unwrap();
        let lens: Vec<usize> = chunks.iter().map(|(_, b)| b.len()).collect();
        assert_eq!(lens, [CHUNK_SIZE, 12345]);
    }

    #[test]
    fn empty_stream_gives_no_chunks() {
        assert_eq!(Chunker::new(io::empty()).count(), 0);
    }

    #[test]
    fn exact_multiple_has_no_empty_tail() {
        let input = data(2 * CHUNK_SIZE);
        assert_eq!(Chunker::new(&input[..]).count(), 2);
    }

    #[test]
    fn read_error_is_reported_once() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("link down"))
            }
        }
        let mut chunker = Chunker::new(Broken);
        let err = chunker.next().unwrap().unwrap_err();
        assert!(matches!(err, Error::Read { .. }), "{err}");
        assert!(err.to_string().contains("link down"));
        assert!(chunker.next().is_none());
    }
}

//! Files on disk: the frame format shared by segments and the checkpoints file, segment naming
//! and listing, and the one decision that lets a crash be repaired without ever repairing
//! tampering — whether a bad frame is a torn tail or corruption.
//!
//! A frame is `u32 length (big-endian) || u32 CRC32 || payload`, where the CRC (crc32fast,
//! IEEE) covers the four length bytes and the payload, so a damaged length is caught like a
//! damaged payload. A log directory holds:
//!
//! - `segment-<first sequence, 20 digits>.log`: framed records, so names sort in log order;
//!   a new segment starts when the current one would pass the size limit;
//! - `checkpoints.log`: framed signed checkpoints;
//! - `LOCK`: held (advisory lock) by the one process that may append.
//!
//! Torn tail versus corruption: a crash can only damage what was being written last, so a bad
//! frame is dropped as a torn tail only when it is in the last file of its kind and nothing
//! after it could be a frame: it runs past the end of the file (and no complete, valid frame
//! starts inside the bytes it would swallow), or it ends exactly at the end of the file, or
//! everything from it to the end is zeros (a file extended by the crash but never written).
//! Anything else — a bad frame with data after it, a bad frame in an earlier segment — is
//! corruption, and opening or verifying the log fails.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::verify::{Problem, VerifyError};

/// Bytes before a frame's payload: length and CRC.
pub const FRAME_HEADER: u64 = 8;
/// Largest payload a frame may carry (16 MiB); a larger length is corruption.
pub const MAX_FRAME: u32 = 16 << 20;
/// The checkpoints file.
pub const CHECKPOINTS_FILE: &str = "checkpoints.log";
/// The lock file held by the appending process.
pub const LOCK_FILE: &str = "LOCK";

const SEGMENT_PREFIX: &str = "segment-";
const SEGMENT_SUFFIX: &str = ".log";

/// The CRC stored in a frame: over the big-endian length and the payload.
pub fn frame_crc(payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&(payload.len() as u32).to_be_bytes());
    h.update(payload);
    h.finalize()
}

/// Appends `payload` as one frame. The caller has checked the size against [`MAX_FRAME`].
pub fn put_frame(out: &mut Vec<u8>, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&frame_crc(payload).to_be_bytes());
    out.extend_from_slice(payload);
}

/// The file name of the segment whose first record has sequence `first`.
pub fn segment_name(first: u64) -> String {
    format!("{SEGMENT_PREFIX}{first:020}{SEGMENT_SUFFIX}")
}

/// The first sequence number encoded in a segment file name, if it is one.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name
        .strip_prefix(SEGMENT_PREFIX)?
        .strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The segments of a log directory, in order: (first sequence, path). A file that starts like
/// a segment but is not named like one is an error, not something to skip.
pub fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, VerifyError> {
    let entries = fs::read_dir(dir).map_err(|e| VerifyError::io(dir, e))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| VerifyError::io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with(SEGMENT_PREFIX) {
            continue;
        }
        match parse_segment_name(name) {
            Some(first) => out.push((first, entry.path())),
            None => {
                return Err(VerifyError::new(
                    entry.path(),
                    None,
                    None,
                    Problem::BadSegmentName,
                ));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Creates a new log file (mode 0600 on Unix: it names principals and holds their SQL).
pub fn create_file(path: &Path) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.append(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)
}

/// Opens an existing log file for appending.
pub fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().append(true).open(path)
}

/// Makes the creation of files in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        // Directory handles cannot be synced on this platform; file creation is as durable
        // as the OS makes it.
        let _ = dir;
        Ok(())
    }
}

/// What is wrong with a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameFault {
    /// Fewer than the 8 header bytes remain.
    #[error("incomplete frame header ({available} bytes)")]
    ShortHeader {
        /// Bytes left in the file.
        available: u64,
    },
    /// The length field exceeds [`MAX_FRAME`].
    #[error("frame length {length} exceeds the {MAX_FRAME}-byte limit")]
    TooLarge {
        /// The stored length.
        length: u32,
    },
    /// The frame runs past the end of the file.
    #[error("frame of {length} bytes runs past the end of the file ({available} bytes left)")]
    Incomplete {
        /// The stored length.
        length: u32,
        /// Payload bytes left in the file.
        available: u64,
    },
    /// The CRC does not match.
    #[error("frame checksum mismatch (stored {stored:08x}, computed {computed:08x})")]
    BadCrc {
        /// The stored CRC.
        stored: u32,
        /// The CRC of the bytes as they are.
        computed: u32,
    },
}

/// One step through a framed file.
#[derive(Debug)]
pub enum Step {
    /// A good frame at `offset`.
    Frame {
        /// Offset of the frame header.
        offset: u64,
        /// The payload.
        payload: Vec<u8>,
    },
    /// A bad frame at `offset`; the reader stops here.
    Fault {
        /// Offset of the bad frame's header.
        offset: u64,
        /// What is wrong.
        fault: FrameFault,
    },
    /// The end of the file (or of the readable length).
    End,
}

/// Reads the frames of one file, up to a given length.
pub struct FrameReader {
    /// The file, for error messages.
    path: PathBuf,
    /// Buffered reader positioned at `offset`.
    reader: BufReader<File>,
    /// Offset of the next frame.
    offset: u64,
    /// How far to read: the file's length, or the durable length a live log has published.
    len: u64,
}

impl FrameReader {
    /// Opens `path`, reading up to `len` bytes (the whole file when `None`).
    pub fn open(path: &Path, len: Option<u64>) -> Result<Self, VerifyError> {
        let file = File::open(path).map_err(|e| VerifyError::io(path, e))?;
        let len = match len {
            Some(l) => l,
            None => file.metadata().map_err(|e| VerifyError::io(path, e))?.len(),
        };
        Ok(FrameReader {
            path: path.to_path_buf(),
            reader: BufReader::with_capacity(1 << 16, file),
            offset: 0,
            len,
        })
    }

    /// The readable length.
    pub fn len(&self) -> u64 {
        self.len
    }

    fn io(&self, e: io::Error) -> VerifyError {
        VerifyError::new(self.path.clone(), Some(self.offset), None, Problem::Io(e))
    }

    /// The next frame, a fault, or the end.
    pub fn next_frame(&mut self) -> Result<Step, VerifyError> {
        let offset = self.offset;
        let left = self.len - offset;
        if left == 0 {
            return Ok(Step::End);
        }
        if left < FRAME_HEADER {
            return Ok(Step::Fault {
                offset,
                fault: FrameFault::ShortHeader { available: left },
            });
        }
        let mut header = [0u8; 8];
        self.reader
            .read_exact(&mut header)
            .map_err(|e| self.io(e))?;
        let length = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        let stored = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
        if length > MAX_FRAME {
            return Ok(Step::Fault {
                offset,
                fault: FrameFault::TooLarge { length },
            });
        }
        let available = left - FRAME_HEADER;
        if u64::from(length) > available {
            return Ok(Step::Fault {
                offset,
                fault: FrameFault::Incomplete { length, available },
            });
        }
        let mut payload = vec![0u8; length as usize];
        self.reader
            .read_exact(&mut payload)
            .map_err(|e| self.io(e))?;
        let computed = frame_crc(&payload);
        if computed != stored {
            return Ok(Step::Fault {
                offset,
                fault: FrameFault::BadCrc { stored, computed },
            });
        }
        self.offset = offset + FRAME_HEADER + u64::from(length);
        Ok(Step::Frame { offset, payload })
    }
}

/// Whether a bad frame is a torn tail (drop it) or corruption (fail), for a fault at `offset`
/// in the last file of its kind, whose length is `len`. `payload_prefix` is how every valid
/// payload in this file starts (the record version byte, or the checkpoint domain), used to
/// look for a complete frame hidden in bytes an over-long length would swallow.
///
/// Returns `Ok(None)` for a torn tail and `Ok(Some(following))` for corruption, with the number
/// of bytes after the bad frame's header that make it so.
pub fn classify_fault(
    path: &Path,
    offset: u64,
    fault: &FrameFault,
    len: u64,
    payload_prefix: &[u8],
) -> Result<Option<u64>, VerifyError> {
    let rest = read_tail(path, offset, len)?;
    let following = rest.len() as u64;
    Ok(match fault {
        FrameFault::ShortHeader { .. } => None,
        // A torn write leaves old bytes (zeros) or new ones, never a length it did not write.
        FrameFault::TooLarge { .. } => Some(following),
        FrameFault::Incomplete { .. } => {
            if is_zero(&rest) {
                None
            } else {
                find_frame(&rest, payload_prefix).map(|_| following)
            }
        }
        FrameFault::BadCrc { .. } => {
            let frame_len = FRAME_HEADER as usize
                + u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            if frame_len == rest.len() || is_zero(&rest) {
                None
            } else {
                Some(following)
            }
        }
    })
}

fn read_tail(path: &Path, offset: u64, len: u64) -> Result<Vec<u8>, VerifyError> {
    let io = |e| VerifyError::new(path.to_path_buf(), Some(offset), None, Problem::Io(e));
    let mut f = File::open(path).map_err(io)?;
    f.seek(SeekFrom::Start(offset)).map_err(io)?;
    let mut rest = Vec::new();
    f.take(len - offset).read_to_end(&mut rest).map_err(io)?;
    Ok(rest)
}

fn is_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == 0)
}

/// The position (after the first byte) of a complete, valid frame whose payload starts with
/// `prefix`, if one exists in `bytes`.
fn find_frame(bytes: &[u8], prefix: &[u8]) -> Option<usize> {
    let h = FRAME_HEADER as usize;
    (1..bytes.len().saturating_sub(h)).find(|&p| {
        let length =
            u32::from_be_bytes([bytes[p], bytes[p + 1], bytes[p + 2], bytes[p + 3]]) as usize;
        let end = p + h + length;
        if length < prefix.len() || end > bytes.len() {
            return false;
        }
        let payload = &bytes[p + h..end];
        if !payload.starts_with(prefix) {
            return false;
        }
        let stored = u32::from_be_bytes([bytes[p + 4], bytes[p + 5], bytes[p + 6], bytes[p + 7]]);
        frame_crc(payload) == stored
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_sort_and_parse() {
        assert_eq!(segment_name(0), "segment-00000000000000000000.log");
        assert_eq!(parse_segment_name(&segment_name(1234)), Some(1234));
        assert_eq!(parse_segment_name(&segment_name(u64::MAX)), Some(u64::MAX));
        assert!(segment_name(9) < segment_name(10));
        assert_eq!(parse_segment_name("segment-12.log"), None);
        assert_eq!(parse_segment_name("segment-0000000000000000000a.log"), None);
    }

    #[test]
    fn finds_a_frame_hidden_in_a_tail() {
        let mut bytes = vec![0, 0, 1, 0, 7, 7, 7, 7, 1, 2, 3];
        put_frame(&mut bytes, &[1, 42, 43]);
        assert_eq!(find_frame(&bytes, &[1]), Some(11));
        assert_eq!(find_frame(&bytes, &[2]), None);
        assert_eq!(find_frame(&bytes[..bytes.len() - 1], &[1]), None);
    }
}

//! What one nats-server node holds of a stream, read from its store
//! directory with no help from the server: the checker's second witness,
//! beside a read through the JetStream API. A replica that lost or rewrote
//! acknowledged messages shows it here even when the leader answers fine.
//!
//! The file store's message blocks (`<store>/jetstream/<account>/streams/
//! <stream>/msgs/<n>.blk`, nats-server's `filestore.go`) are records packed
//! back to back, little-endian:
//!
//! ```text
//! u32 length (bit 31: has headers) | u64 sequence (bit 63: erased, bit 62: tombstone)
//! | i64 time (ns) | u16 subject length | subject | [u32 header length | headers]
//! | payload | u64 HighwayHash-64 of sequence..time, subject, headers, payload,
//!   keyed by SHA-256("<stream>-<n>")
//! ```
//!
//! Reading stops at a block's first record that does not check, as the
//! server does when it recovers; what was passed over is reported.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use highway::{HighwayHash as _, HighwayHasher, Key};
use sha2::Digest as _;

const HEADERS_BIT: u32 = 1 << 31;
const ERASED_BIT: u64 = 1 << 63;
const TOMBSTONE_BIT: u64 = 1 << 62;
/// Length, sequence, time and subject length.
const RECORD_HEAD: usize = 22;
const CHECKSUM: usize = 8;
const MAX_RECORD: usize = 32 << 20;

/// One stored message as the node holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub subject: String,
    pub headers: Vec<u8>,
    pub payload: Vec<u8>,
}

/// A node's copy of a stream.
#[derive(Debug, Default, Clone)]
pub struct NodeCopy {
    pub messages: BTreeMap<u64, StoredMessage>,
    /// Records that did not check (bad length or checksum): the block, the
    /// offset, and why. The server truncates a block there when it recovers.
    pub damaged: Vec<String>,
}

/// The message blocks of `stream` in `account` under a node's store
/// directory, in block order.
pub fn blocks(store_dir: &Path, account: &str, stream: &str) -> anyhow::Result<Vec<(u64, PathBuf)>> {
    let dir = store_dir.join("jetstream").join(account).join("streams").join(stream).join("msgs");
    let mut blocks = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(blocks),
        Err(error) => return Err(error).with_context(|| format!("reading {}", dir.display())),
    };
    for entry in entries {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
        if let Some(number) = name.strip_suffix(".blk").and_then(|n| n.parse::<u64>().ok()) {
            blocks.push((number, path));
        }
    }
    blocks.sort();
    Ok(blocks)
}

/// Read every message of `stream` a node's store directory holds.
pub fn read_node(store_dir: &Path, account: &str, stream: &str) -> anyhow::Result<NodeCopy> {
    let mut copy = NodeCopy::default();
    let mut deleted = BTreeSet::new();
    for (number, path) in blocks(store_dir, account, stream)? {
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let block = parse_block(stream, number, &bytes);
        if let Some(damage) = block.damage {
            copy.damaged.push(format!("{}: {damage}", path.display()));
        }
        deleted.extend(block.tombstones);
        copy.messages.extend(block.messages);
    }
    for sequence in deleted {
        copy.messages.remove(&sequence);
    }
    Ok(copy)
}

/// What one block holds.
#[derive(Debug, Default)]
pub struct Block {
    pub messages: Vec<(u64, StoredMessage)>,
    pub tombstones: Vec<u64>,
    /// Where and why reading stopped before the end.
    pub damage: Option<String>,
}

/// Parse one message block (pure: the bytes of block `number` of `stream`).
pub fn parse_block(stream: &str, number: u64, bytes: &[u8]) -> Block {
    let mut block = Block::default();
    if bytes.starts_with(b"cmp") {
        block.damage = Some("compressed block (not read)".into());
        return block;
    }
    let key = block_key(stream, number);
    let mut offset = 0;
    let mut last = 0;
    while offset < bytes.len() {
        let rest = &bytes[offset..];
        if rest.len() < RECORD_HEAD {
            block.damage = Some(format!("{} bytes at offset {offset} are no whole record", rest.len()));
            break;
        }
        let raw_length = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes"));
        let has_headers = raw_length & HEADERS_BIT != 0;
        let length = (raw_length & !HEADERS_BIT) as usize;
        let raw_sequence = u64::from_le_bytes(rest[4..12].try_into().expect("8 bytes"));
        let subject_length = u16::from_le_bytes(rest[20..22].try_into().expect("2 bytes")) as usize;
        let head = subject_length + if has_headers { 4 } else { 0 };
        if length < RECORD_HEAD + CHECKSUM
            || head > length - RECORD_HEAD - CHECKSUM
            || length > rest.len()
            || length > MAX_RECORD
        {
            block.damage = Some(format!("record at offset {offset} has an impossible length {length}"));
            break;
        }
        let body = &rest[RECORD_HEAD..length - CHECKSUM];
        let subject = &body[..subject_length];
        let (headers, payload) = if has_headers {
            let header_length = u32::from_le_bytes(body[subject_length..subject_length + 4].try_into().expect("4"));
            let start = subject_length + 4;
            let Some(end) = start.checked_add(header_length as usize).filter(|end| *end <= body.len()) else {
                block.damage = Some(format!("record at offset {offset} has headers longer than itself"));
                break;
            };
            (&body[start..end], &body[end..])
        } else {
            (&[][..], &body[subject_length..])
        };
        let mut hasher = HighwayHasher::new(key);
        hasher.append(&rest[4..20]);
        hasher.append(subject);
        hasher.append(headers);
        hasher.append(payload);
        if hasher.finalize64().to_le_bytes() != rest[length - CHECKSUM..length] {
            block.damage = Some(format!(
                "record at offset {offset} (sequence {}) fails its checksum",
                raw_sequence & !(ERASED_BIT | TOMBSTONE_BIT)
            ));
            break;
        }
        offset += length;
        if raw_sequence & TOMBSTONE_BIT != 0 {
            block.tombstones.push(raw_sequence & !(ERASED_BIT | TOMBSTONE_BIT));
            continue;
        }
        if raw_sequence & ERASED_BIT != 0 || raw_sequence == 0 || raw_sequence <= last {
            continue;
        }
        last = raw_sequence;
        block.messages.push((
            raw_sequence,
            StoredMessage {
                subject: String::from_utf8_lossy(subject).into_owned(),
                headers: headers.to_vec(),
                payload: payload.to_vec(),
            },
        ));
    }
    block
}

/// The HighwayHash key of block `number`: SHA-256 of "<stream>-<number>",
/// as four little-endian words.
fn block_key(stream: &str, number: u64) -> Key {
    let digest = sha2::Sha256::digest(format!("{stream}-{number}").as_bytes());
    let word = |i: usize| u64::from_le_bytes(digest[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
    Key([word(0), word(1), word(2), word(3)])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record as nats-server writes it (the same layout, built here).
    fn record(stream: &str, number: u64, sequence: u64, subject: &str, headers: &[u8], payload: &[u8]) -> Vec<u8> {
        let head = subject.len() + if headers.is_empty() { 0 } else { 4 + headers.len() };
        let length = (RECORD_HEAD + head + payload.len() + CHECKSUM) as u32;
        let mut out = Vec::new();
        out.extend((if headers.is_empty() { length } else { length | HEADERS_BIT }).to_le_bytes());
        out.extend(sequence.to_le_bytes());
        out.extend(1_700_000_000_000_000_000i64.to_le_bytes());
        out.extend((subject.len() as u16).to_le_bytes());
        out.extend(subject.as_bytes());
        if !headers.is_empty() {
            out.extend((headers.len() as u32).to_le_bytes());
            out.extend(headers);
        }
        out.extend(payload);
        let mut hasher = HighwayHasher::new(block_key(stream, number));
        hasher.append(&out[4..20]);
        hasher.append(subject.as_bytes());
        hasher.append(headers);
        hasher.append(payload);
        out.extend(hasher.finalize64().to_le_bytes());
        out
    }

    #[test]
    fn a_block_reads_back_and_stops_at_its_first_bad_record() {
        let mut bytes = record("S", 1, 1, "a.b", b"NATS/1.0\r\nX: 1\r\n\r\n", b"one");
        bytes.extend(record("S", 1, 2, "a.c", b"", b"two"));
        let block = parse_block("S", 1, &bytes);
        assert_eq!(block.messages.len(), 2);
        assert_eq!(block.messages[0].1.payload, b"one");
        assert_eq!(block.messages[1].1.subject, "a.c");
        assert!(block.damage.is_none());

        // The same bytes under another block's key do not check.
        assert!(parse_block("S", 2, &bytes).damage.unwrap().contains("checksum"));

        // A flipped payload byte in the second record: the first survives.
        let mut flipped = bytes.clone();
        let at = flipped.len() - CHECKSUM - 1;
        flipped[at] ^= 0xff;
        let block = parse_block("S", 1, &flipped);
        assert_eq!(block.messages.len(), 1);
        assert!(block.damage.unwrap().contains("sequence 2"));

        // A torn tail.
        let block = parse_block("S", 1, &bytes[..bytes.len() - 5]);
        assert_eq!(block.messages.len(), 1);
        assert!(block.damage.is_some());
    }

    #[test]
    fn tombstones_and_erased_records_are_not_messages() {
        let mut bytes = record("S", 1, 1, "a", b"", b"x");
        bytes.extend(record("S", 1, 2 | ERASED_BIT, "", b"", b""));
        bytes.extend(record("S", 1, 1 | TOMBSTONE_BIT, "", b"", b""));
        let block = parse_block("S", 1, &bytes);
        assert_eq!(block.messages.iter().map(|(s, _)| *s).collect::<Vec<_>>(), vec![1]);
        assert_eq!(block.tombstones, vec![1]);
    }
}

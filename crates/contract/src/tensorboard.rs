//! Scalars in TensorBoard's event format, so `tensorboard --logdir` follows
//! a run as it trains.
//!
//! A file `events.out.tfevents.<seconds>.<host>` is a sequence of TFRecords
//! (little-endian u64 length, masked CRC32C of the length, the bytes, masked
//! CRC32C of the bytes), each an `Event` protobuf (tensorflow/core/util/
//! event.proto): first `file_version = "brain.Event:2"`, then one event per
//! step holding a `Summary` of `(tag, simple_value)` pairs. The few fields
//! are encoded here by hand.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{ContractError, Result};

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) of `bytes`.
pub fn crc32c(bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 == 1 {
                    (c >> 1) ^ 0x82F6_3B78
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    !bytes.iter().fold(!0u32, |c, &b| {
        TABLE[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8)
    })
}

/// TFRecord's masked CRC: ((crc >> 15) | (crc << 17)) + 0xa282ead8.
pub fn masked_crc32c(bytes: &[u8]) -> u32 {
    crc32c(bytes).rotate_right(15).wrapping_add(0xa282_ead8)
}

/// One TFRecord around `data`.
pub fn tfrecord(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc32c(data).to_le_bytes());
    out
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A length-delimited field (wire type 2).
fn bytes_field(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    varint(out, ((field as u64) << 3) | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// `Event { wall_time = 1 (double), step = 2 (int64), file_version = 3 | summary = 5 }`.
fn event(wall_time: f64, step: i64, body: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::new();
    varint(&mut out, (1 << 3) | 1);
    out.extend_from_slice(&wall_time.to_le_bytes());
    varint(&mut out, 2 << 3);
    varint(&mut out, step as u64);
    body(&mut out);
    out
}

/// An `Event` holding `Summary { repeated Value value = 1 }`, each
/// `Value { tag = 1 (string), simple_value = 2 (float) }`.
pub fn scalars_event(wall_time: f64, step: u64, scalars: &[(&str, f64)]) -> Vec<u8> {
    let mut summary = Vec::new();
    for (tag, v) in scalars {
        let mut value = Vec::new();
        bytes_field(&mut value, 1, tag.as_bytes());
        varint(&mut value, (2 << 3) | 5);
        value.extend_from_slice(&(*v as f32).to_le_bytes());
        bytes_field(&mut summary, 1, &value);
    }
    event(wall_time, step as i64, |out| bytes_field(out, 5, &summary))
}

/// An event file being appended to: every record is written and flushed
/// as it comes, so a reader follows the run.
#[derive(Debug)]
pub struct EventWriter {
    path: PathBuf,
    file: std::fs::File,
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl EventWriter {
    /// Start a new event file in `dir` (created if missing), named as
    /// TensorBoard's own writers name theirs, with the file-version event.
    pub fn create(dir: &Path) -> Result<Self> {
        crate::io::create_dir(dir)?;
        let wall = now();
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default();
        let host = if host.is_empty() { "gradscope" } else { &host };
        // Seconds and the process id: two writers never share a file.
        let path = dir.join(format!(
            "events.out.tfevents.{}.{host}.{}",
            wall as u64,
            std::process::id()
        ));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| ContractError::io(&path, e))?;
        let mut w = EventWriter { path, file };
        let version = event(wall, 0, |out| bytes_field(out, 3, b"brain.Event:2"));
        w.append(&version)?;
        Ok(w)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append the scalars of `step` (tags such as `loss/train`).
    pub fn scalars(&mut self, step: u64, scalars: &[(&str, f64)]) -> Result<()> {
        let e = scalars_event(now(), step, scalars);
        self.append(&e)
    }

    fn append(&mut self, event: &[u8]) -> Result<()> {
        self.file
            .write_all(&tfrecord(event))
            .and_then(|_| self.file.flush())
            .map_err(|e| ContractError::io(&self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_values() {
        // RFC 3720 B.4 and the usual "123456789" check value.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xffu8; 32]), 0x62A8_AB43);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn a_scalar_event_has_the_protobuf_bytes_by_hand() {
        let e = scalars_event(1.5, 300, &[("a", 2.0)]);
        let mut want = vec![0x09];
        want.extend_from_slice(&1.5f64.to_le_bytes());
        want.extend_from_slice(&[0x10, 0xac, 0x02]); // step 300 as a varint
        // summary (field 5) → value (field 1) → tag "a", simple_value 2.0f.
        want.extend_from_slice(&[0x2a, 10, 0x0a, 8, 0x0a, 1, b'a', 0x15]);
        want.extend_from_slice(&2.0f32.to_le_bytes());
        assert_eq!(e, want);
        let r = tfrecord(&e);
        assert_eq!(r.len(), e.len() + 16);
        assert_eq!(&r[..8], &(e.len() as u64).to_le_bytes());
        assert_eq!(&r[8..12], &masked_crc32c(&r[..8]).to_le_bytes());
        assert_eq!(&r[r.len() - 4..], &masked_crc32c(&e).to_le_bytes());
    }
}

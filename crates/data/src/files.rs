//! Readers for data sets the user has on disk.
//!
//! - MNIST (LeCun et al. 1998) as the four IDX files of
//!   <http://yann.lecun.com/exdb/mnist/>, plain or gzipped:
//!   `{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`. Fashion-MNIST
//!   uses the same files.
//! - CIFAR-10 (Krizhevsky 2009), "binary version": `data_batch_1.bin` …
//!   `data_batch_5.bin` and `test_batch.bin`, each record one label byte and
//!   3 × 1024 pixel bytes (red, green, blue planes, row-major). The folder may
//!   be the archive's `cifar-10-batches-bin/` or its parent.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::{DataError, LabelledImages, Result, Split};

/// Read a whole file, gunzipping it when its name ends in `.gz`.
fn read(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| DataError::io(path, e))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// `dir/name` or `dir/name.gz`, whichever exists.
fn find(dir: &Path, name: &str) -> Result<PathBuf> {
    let plain = dir.join(name);
    let gz = dir.join(format!("{name}.gz"));
    if plain.is_file() {
        Ok(plain)
    } else if gz.is_file() {
        Ok(gz)
    } else {
        Err(DataError::Io {
            path: plain,
            reason: "no such file (nor .gz)".into(),
        })
    }
}

fn corrupt(path: &Path, reason: impl Into<String>) -> DataError {
    DataError::Corrupt {
        name: path.display().to_string(),
        reason: reason.into(),
    }
}

/// An IDX file: big-endian magic (0, 0, type 0x08 = u8, number of dims), the
/// dims as big-endian u32, then the data.
fn idx(path: &Path, dims: usize) -> Result<(Vec<usize>, Vec<u8>)> {
    let bytes = read(path)?;
    if bytes.len() < 4 + 4 * dims {
        return Err(corrupt(path, "too short for an IDX header"));
    }
    if bytes[..2] != [0, 0] || bytes[2] != 0x08 || bytes[3] as usize != dims {
        return Err(corrupt(
            path,
            format!(
                "not an IDX file of unsigned bytes with {dims} dimension(s) (magic {:02x?})",
                &bytes[..4]
            ),
        ));
    }
    let shape: Vec<usize> = (0..dims)
        .map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize)
        .collect();
    let data = bytes[4 + 4 * dims..].to_vec();
    let want = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if want != Some(data.len()) {
        let header = 4 + 4 * dims;
        return Err(corrupt(
            path,
            match want {
                Some(w) if w > data.len() => format!(
                    "truncated at byte {}: the header says {shape:?}, {} bytes in all",
                    bytes.len(),
                    header + w
                ),
                _ => format!(
                    "header says {shape:?} but {} data bytes follow (from byte {header})",
                    data.len()
                ),
            },
        ));
    }
    Ok((shape, data))
}

fn mnist_part(dir: &Path, prefix: &str) -> Result<LabelledImages> {
    let images = find(dir, &format!("{prefix}-images-idx3-ubyte"))?;
    let labels = find(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
    let (shape, pixels) = idx(&images, 3)?;
    let (lshape, ls) = idx(&labels, 1)?;
    if shape[0] != lshape[0] {
        return Err(corrupt(
            &labels,
            format!("{} labels for {} images", lshape[0], shape[0]),
        ));
    }
    if shape[0] == 0 {
        return Err(corrupt(&images, "no images"));
    }
    if let Some(bad) = ls.iter().find(|&&l| l > 9) {
        return Err(corrupt(&labels, format!("label {bad} outside 0–9")));
    }
    Ok(LabelledImages {
        images: pixels.iter().map(|&p| p as f32 / 255.0).collect(),
        labels: ls.iter().map(|&l| l as u32).collect(),
        channels: 1,
        height: shape[1],
        width: shape[2],
        classes: 10,
    })
}

/// MNIST from the IDX files in `dir` (60,000 train and 10,000 test 28×28
/// images for the real set; any sizes are read). Pixels scaled to [0, 1].
pub fn mnist(dir: &Path) -> Result<Split> {
    Ok(Split {
        train: mnist_part(dir, "train")?,
        test: mnist_part(dir, "t10k")?,
    })
}

const CIFAR_RECORD: usize = 1 + 3 * 32 * 32;

fn cifar_batches(dir: &Path, names: &[String]) -> Result<LabelledImages> {
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    for name in names {
        let path = find(dir, name)?;
        let bytes = read(&path)?;
        if bytes.is_empty() || bytes.len() % CIFAR_RECORD != 0 {
            let whole = bytes.len() / CIFAR_RECORD;
            return Err(corrupt(
                &path,
                format!(
                    "{} bytes is not a whole number of {CIFAR_RECORD}-byte records: record {} starting at byte {} is cut after {} bytes",
                    bytes.len(),
                    whole,
                    whole * CIFAR_RECORD,
                    bytes.len() % CIFAR_RECORD
                ),
            ));
        }
        for rec in bytes.chunks_exact(CIFAR_RECORD) {
            if rec[0] > 9 {
                return Err(corrupt(&path, format!("label {} outside 0–9", rec[0])));
            }
            labels.push(rec[0] as u32);
            images.extend(rec[1..].iter().map(|&p| p as f32 / 255.0));
        }
    }
    Ok(LabelledImages {
        images,
        labels,
        channels: 3,
        height: 32,
        width: 32,
        classes: 10,
    })
}

/// CIFAR-10 from the binary batches in `dir` (or `dir/cifar-10-batches-bin`):
/// 50,000 train and 10,000 test 32×32 RGB images. Pixels scaled to [0, 1]
/// (no mean subtraction: the nets' BN takes care of it).
pub fn cifar10(dir: &Path) -> Result<Split> {
    let nested = dir.join("cifar-10-batches-bin");
    let dir = if nested.is_dir() { &nested } else { dir };
    let train: Vec<String> = (1..=5).map(|i| format!("data_batch_{i}.bin")).collect();
    Ok(Split {
        train: cifar_batches(dir, &train)?,
        test: cifar_batches(dir, &["test_batch.bin".to_string()])?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut b = vec![0, 0, 0x08, dims.len() as u8];
        for d in dims {
            b.extend(d.to_be_bytes());
        }
        b.extend(data);
        b
    }

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    fn write_mnist(dir: &Path, gzipped: bool) {
        // 3 train and 2 test images of 2×2.
        for (prefix, n) in [("train", 3u32), ("t10k", 2)] {
            let pixels: Vec<u8> = (0..n * 4).map(|i| (i * 17) as u8).collect();
            let labels: Vec<u8> = (0..n).map(|i| (i * 4) as u8).collect();
            for (name, bytes) in [
                ("images-idx3-ubyte", idx_bytes(&[n, 2, 2], &pixels)),
                ("labels-idx1-ubyte", idx_bytes(&[n], &labels)),
            ] {
                let file = format!("{prefix}-{name}");
                if gzipped {
                    std::fs::write(dir.join(file + ".gz"), gz(&bytes)).unwrap();
                } else {
                    std::fs::write(dir.join(file), bytes).unwrap();
                }
            }
        }
    }

    #[test]
    fn mnist_idx_files_read_plain_and_gzipped() {
        for gzipped in [false, true] {
            let tmp = tempfile::tempdir().unwrap();
            write_mnist(tmp.path(), gzipped);
            let s = mnist(tmp.path()).unwrap();
            assert_eq!((s.train.labels.len(), s.test.labels.len()), (3, 2));
            assert_eq!((s.train.height, s.train.width, s.train.channels), (2, 2, 1));
            assert_eq!(s.train.labels, vec![0, 4, 8]);
            // Pixel 5 of the train set is byte 85 = 85/255.
            assert_eq!(s.train.images[5], 85.0 / 255.0);
            assert_eq!(s.test.images.len(), 8);
        }
    }

    #[test]
    fn bad_mnist_files_are_named_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let e = mnist(tmp.path()).unwrap_err().to_string();
        assert!(
            e.contains("train-images-idx3-ubyte") && e.contains("no such file"),
            "{e}"
        );
        write_mnist(tmp.path(), false);
        let f = tmp.path().join("train-images-idx3-ubyte");
        // Truncated data, wrong magic, label count mismatch, label out of range.
        std::fs::write(&f, idx_bytes(&[3, 2, 2], &[0; 11])).unwrap();
        let e = mnist(tmp.path()).unwrap_err().to_string();
        assert!(
            e.contains("truncated at byte 27") && e.contains("28 bytes in all"),
            "{e}"
        );
        std::fs::write(&f, b"PK\x03\x04 this is a zip, not IDX").unwrap();
        assert!(
            mnist(tmp.path())
                .unwrap_err()
                .to_string()
                .contains("not an IDX file")
        );
        std::fs::write(&f, idx_bytes(&[4, 2, 2], &[0; 16])).unwrap();
        assert!(
            mnist(tmp.path())
                .unwrap_err()
                .to_string()
                .contains("3 labels for 4 images")
        );
        write_mnist(tmp.path(), false);
        std::fs::write(
            tmp.path().join("t10k-labels-idx1-ubyte"),
            idx_bytes(&[2], &[1, 12]),
        )
        .unwrap();
        assert!(
            mnist(tmp.path())
                .unwrap_err()
                .to_string()
                .contains("label 12")
        );
    }

    #[test]
    fn cifar10_binary_batches_read_with_planes_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("cifar-10-batches-bin");
        std::fs::create_dir(&dir).unwrap();
        let record = |label: u8, fill: u8| {
            let mut r = vec![label];
            r.extend((0..3 * 1024).map(|i| if i < 1024 { fill } else { (i / 1024) as u8 }));
            r
        };
        for i in 1..=5u8 {
            let mut b = record(i, 255);
            b.extend(record(9, 0));
            std::fs::write(dir.join(format!("data_batch_{i}.bin")), b).unwrap();
        }
        std::fs::write(dir.join("test_batch.bin"), record(3, 51)).unwrap();
        let s = cifar10(tmp.path()).unwrap();
        assert_eq!((s.train.labels.len(), s.test.labels.len()), (10, 1));
        assert_eq!(&s.train.labels[..4], &[1, 9, 2, 9]);
        assert_eq!((s.test.channels, s.test.height, s.test.width), (3, 32, 32));
        // Red plane first, then green (byte 1), then blue (byte 2).
        assert_eq!(s.test.images[0], 0.2);
        assert_eq!(s.test.images[1024], 1.0 / 255.0);
        assert_eq!(s.test.images[2048], 2.0 / 255.0);
        std::fs::write(dir.join("test_batch.bin"), [0u8; 100]).unwrap();
        assert!(
            cifar10(tmp.path())
                .unwrap_err()
                .to_string()
                .contains("3073-byte records")
        );
    }
}

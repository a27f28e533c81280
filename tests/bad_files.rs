//! The bad-input corpus, files: corrupt, truncated and mismatched weights
//! files, data sets and study folders, and a full disk, each refused with a
//! one-line error that names the problem, none panicking, none leaving a
//! partial file behind (study files and command lines: `bad_input.rs`).

use std::panic::{AssertUnwindSafe, catch_unwind};

mod common;
use common::{gradscope, path, refused, walk};

/// A one-line error, or a failure naming the case.
fn one_line<T, E: std::fmt::Display>(
    label: &str,
    r: std::thread::Result<Result<T, E>>,
) -> Result<(), String> {
    match r {
        Err(_) => Err(format!("{label}: panicked")),
        Ok(Ok(_)) => Err(format!("{label}: accepted")),
        Ok(Err(e)) => {
            let e = e.to_string();
            if e.contains('\n') || e.is_empty() {
                Err(format!("{label}: not one line: {e:?}"))
            } else {
                Ok(())
            }
        }
    }
}

/// A change to a safetensors header.
type HeaderEdit<'a> = Box<dyn Fn(&mut serde_json::Value) + 'a>;

/// Cut points: the start, every byte of the first 64, then spread to the end.
fn cuts(len: usize) -> Vec<usize> {
    let mut c: Vec<usize> = (0..len.min(64)).collect();
    c.extend((1..24).map(|k| len * k / 24));
    c.push(len - 1);
    c.sort();
    c.dedup();
    c
}

#[test]
fn corrupt_truncated_and_mismatched_weights_files_are_refused() {
    use gradscope_nets::{Arch, Mlp, NetParams};
    let tmp = tempfile::tempdir().unwrap();
    let spec = |arch, depth, width| {
        NetParams {
            arch,
            depth,
            width,
            ..Default::default()
        }
        .check()
        .unwrap()
    };
    let net = Mlp::new(&spec(Arch::RESNET_BN, 2, 8)).unwrap();
    let good = net.to_safetensors().unwrap();
    let file = tmp.path().join("w.safetensors");
    let load = |bytes: &[u8], target: &Mlp| {
        std::fs::write(&file, bytes).unwrap();
        catch_unwind(AssertUnwindSafe(|| target.load_safetensors(&file)))
    };
    let mut problems = vec![];
    let mut cases = 0;
    // The good file loads (the corpus is not refusing everything).
    assert!(matches!(load(&good, &net), Ok(Ok(()))));
    for cut in cuts(good.len()) {
        cases += 1;
        problems.extend(
            one_line(
                &format!("truncated to {cut} bytes"),
                load(&good[..cut], &net),
            )
            .err(),
        );
    }
    // Header edits: parse the JSON header, change it, reassemble.
    let n = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&good[8..8 + n]).unwrap();
    let body = &good[8 + n..];
    let rebuild = |h: &serde_json::Value| {
        let text = serde_json::to_vec(h).unwrap();
        let mut b = (text.len() as u64).to_le_bytes().to_vec();
        b.extend(text);
        b.extend(body);
        b
    };
    let names: Vec<String> = header
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| *k != "__metadata__")
        .cloned()
        .collect();
    for name in &names {
        let edits: Vec<(&str, HeaderEdit)> = vec![
            (
                "renamed",
                Box::new(|h: &mut serde_json::Value| {
                    let v = h.as_object_mut().unwrap().remove(name).unwrap();
                    h[format!("{name}_x")] = v;
                }),
            ),
            (
                "removed",
                Box::new(|h: &mut serde_json::Value| {
                    h.as_object_mut().unwrap().remove(name);
                }),
            ),
            (
                "integer dtype",
                Box::new(|h: &mut serde_json::Value| h[name]["dtype"] = "I64".into()),
            ),
            (
                "unknown dtype",
                Box::new(|h: &mut serde_json::Value| h[name]["dtype"] = "Q3".into()),
            ),
            (
                "wrong shape",
                Box::new(|h: &mut serde_json::Value| {
                    let s = h[name]["shape"].as_array().unwrap().clone();
                    let mut t: Vec<serde_json::Value> = s.into_iter().rev().collect();
                    t.push(1.into());
                    h[name]["shape"] = t.into();
                }),
            ),
            (
                "offsets past the end",
                Box::new(|h: &mut serde_json::Value| {
                    h[name]["data_offsets"] = serde_json::json!([0, 1u64 << 40])
                }),
            ),
            (
                "offsets reversed",
                Box::new(|h: &mut serde_json::Value| {
                    h[name]["data_offsets"] = serde_json::json!([8, 0])
                }),
            ),
        ];
        for (what, edit) in edits {
            let mut h = header.clone();
            edit(&mut h);
            cases += 1;
            problems.extend(one_line(&format!("{name}: {what}"), load(&rebuild(&h), &net)).err());
        }
    }
    // A header length beyond the file, a header that is not JSON, not safetensors at all.
    let mut huge = good.clone();
    huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    let mut not_json = good.clone();
    not_json[8] = b'#';
    for (what, bytes) in [
        ("huge header length", huge),
        ("header not JSON", not_json),
        ("a PNG", b"\x89PNG\r\n\x1a\n....".to_vec()),
        ("empty", vec![]),
    ] {
        cases += 1;
        problems.extend(one_line(what, load(&bytes, &net)).err());
    }
    // Good files of other nets.
    for (what, other) in [
        ("wider net", spec(Arch::RESNET_BN, 2, 16)),
        ("deeper net", spec(Arch::RESNET_BN, 3, 8)),
        ("plain net", spec(Arch::PLAIN_BN, 2, 8)),
        ("no BN", spec(Arch::RESNET, 2, 8)),
    ] {
        cases += 1;
        problems.extend(
            one_line(
                what,
                load(&Mlp::new(&other).unwrap().to_safetensors().unwrap(), &net),
            )
            .err(),
        );
    }
    assert!(
        problems.is_empty(),
        "{} of {cases}:\n{}",
        problems.len(),
        problems.join("\n")
    );
    assert!(cases >= 150, "{cases}");
}

#[test]
fn truncated_data_and_result_files_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut problems = vec![];
    let mut cases = 0;
    // MNIST IDX: 5 images of 28×28, truncated anywhere.
    let mnist = tmp.path().join("mnist");
    std::fs::create_dir(&mnist).unwrap();
    let idx = |dims: &[u32], data: &[u8]| {
        let mut b = vec![0, 0, 0x08, dims.len() as u8];
        for d in dims {
            b.extend(d.to_be_bytes());
        }
        b.extend(data);
        b
    };
    let images = idx(&[5, 28, 28], &[7; 5 * 784]);
    for prefix in ["train", "t10k"] {
        std::fs::write(mnist.join(format!("{prefix}-images-idx3-ubyte")), &images).unwrap();
        std::fs::write(
            mnist.join(format!("{prefix}-labels-idx1-ubyte")),
            idx(&[5], &[1, 2, 3, 4, 5]),
        )
        .unwrap();
    }
    assert!(gradscope_data::mnist(&mnist).is_ok());
    for cut in cuts(images.len()) {
        std::fs::write(mnist.join("train-images-idx3-ubyte"), &images[..cut]).unwrap();
        cases += 1;
        problems.extend(
            one_line(
                &format!("IDX cut at {cut}"),
                catch_unwind(|| gradscope_data::mnist(&mnist)),
            )
            .err(),
        );
    }
    // CIFAR-10: one record per batch, truncated anywhere.
    let cifar = tmp.path().join("cifar");
    std::fs::create_dir(&cifar).unwrap();
    let record: Vec<u8> = std::iter::once(3u8)
        .chain(std::iter::repeat_n(9u8, 3072))
        .collect();
    for i in 1..=5 {
        std::fs::write(cifar.join(format!("data_batch_{i}.bin")), &record).unwrap();
    }
    std::fs::write(cifar.join("test_batch.bin"), &record).unwrap();
    assert!(gradscope_data::cifar10(&cifar).is_ok());
    for cut in cuts(record.len()) {
        std::fs::write(cifar.join("test_batch.bin"), &record[..cut]).unwrap();
        cases += 1;
        problems.extend(
            one_line(
                &format!("CIFAR cut at {cut}"),
                catch_unwind(|| gradscope_data::cifar10(&cifar)),
            )
            .err(),
        );
    }
    // NPY arrays of a study folder: the report refuses the folder.
    let data = tmp.path().join("data");
    let r = gradscope(&[
        "shattered",
        "--quick",
        "--archs",
        "resnet-bn",
        "--depths",
        "1,2",
        "--seeds",
        "2",
        "--no-report",
        "--out",
        path(&data),
    ]);
    assert!(r.status.success());
    let dir = data.join("shattered");
    for f in [
        "input_gradients.npy",
        "power_spectra.npy",
        "grid.npy",
        "summary.json",
    ] {
        let good = std::fs::read(dir.join(f)).unwrap();
        for cut in cuts(good.len()).into_iter().step_by(4) {
            std::fs::write(dir.join(f), &good[..cut]).unwrap();
            cases += 1;
            problems.extend(
                one_line(
                    &format!("{f} cut at {cut}"),
                    catch_unwind(|| gradscope_studies::shattered::ShatteredData::read(&dir)),
                )
                .err(),
            );
        }
        std::fs::write(dir.join(f), &good).unwrap();
    }
    // And through the binary: one line, no report written.
    std::fs::write(dir.join("power_spectra.npy"), b"\x93NUMPY\x01\x00").unwrap();
    refused(
        &[
            "report",
            "--out",
            path(&data),
            "--reports",
            path(&tmp.path().join("reports")),
        ],
        &tmp.path().join("reports"),
        "power_spectra.npy",
    );
    assert!(
        problems.is_empty(),
        "{} of {cases}:\n{}",
        problems.len(),
        problems.join("\n")
    );
    assert!(cases >= 200, "{cases}");
}

/// A full disk, simulated for any user (root included) by a file-size limit:
/// every write past 64 KiB fails with EFBIG, as a write to a full disk fails
/// with ENOSPC.
#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_is_a_one_line_error_with_no_partial_file() {
    use std::os::unix::process::CommandExt;
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_gradscope"));
    cmd.args(["shattered", "--quick", "--no-report", "--out", path(&out)]);
    // SAFETY: only async-signal-safe libc calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 64 << 10,
                rlim_max: 64 << 10,
            };
            libc::setrlimit(libc::RLIMIT_FSIZE, &limit);
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    let r = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success(), "succeeded on a full disk");
    assert!(
        !err.contains("panicked") && err.trim_end().lines().count() == 1,
        "{err}"
    );
    assert!(
        err.contains("too large") || err.contains("File too large"),
        "{err}"
    );
    // Whatever was written is whole: no temp files, no summary without its arrays.
    let left = walk(&out);
    assert!(
        left.iter().all(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            !name.starts_with('.') || name == ".lock"
        }),
        "{left:?}"
    );
    assert!(!out.join("shattered/summary.json").exists());
    for p in &left {
        assert!(
            std::fs::metadata(p).unwrap().len() <= 64 << 10,
            "{}",
            p.display()
        );
    }
}

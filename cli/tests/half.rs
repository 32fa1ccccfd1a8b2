//! float16 `.npy` inputs: `eval` gives the loss of their widened values and writes the
//! gradient as float16 (float32 with `--grad-f32`, and from the f64 reference); `check --precision f16` passes every
//! case; `bench --precision f16` reports its rows' precision.

mod support;

use std::path::Path;

use metric_loss::half::f16;
use metric_loss_cli::npy::{self, Dtype};
use support::{cli, common, json_field, Dir};

fn f16s(d: &Dir, name: &str, shape: &str, v: &[f32]) -> String {
    let b: Vec<u8> = v
        .iter()
        .flat_map(|&x| f16::from_f32(x).to_le_bytes())
        .collect();
    d.npy(name, "<f2", shape, &b)
}

fn loss_of(out: &std::process::Output) -> f64 {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout);
    json_field(line.lines().last().unwrap(), "loss")
        .parse()
        .unwrap()
}

#[test]
fn eval_reads_float16_and_writes_the_gradient_in_it() {
    // Values f16 holds exactly (k/8), so the float32 file is the same rows.
    let rows: Vec<f32> = (0..24).map(|k| ((k * 7) % 17) as f32 / 8.0 - 1.0).collect();
    let d = Dir::new("half");
    let x16 = f16s(&d, "x16.npy", "(6, 4)", &rows);
    let x32 = d.f32s("x32.npy", "(6, 4)", &rows);
    let labels = d.i64s("l.npy", &[0, 0, 1, 1, 2, 2]);
    let mut devices = vec!["cpu"];
    if common::gpu().is_some() {
        devices.push("gpu");
    }
    for device in devices {
        let (g16, g32, gw) = (d.path("g16.npy"), d.path("g32.npy"), d.path("gw.npy"));
        let run = |x: &str, g: &Path, wide: bool| {
            let mut args = vec![
                "eval",
                "--loss",
                "supcon",
                "--embeddings",
                x,
                "--labels",
                &labels,
                "--device",
                device,
                "--grad",
                g.to_str().unwrap(),
            ];
            if wide {
                args.push("--grad-f32");
            }
            loss_of(&cli(&args))
        };
        let (a, b, c) = (
            run(&x16, &g16, false),
            run(&x32, &g32, false),
            run(&x16, &gw, true),
        );
        assert_eq!(a, b, "{device}");
        assert_eq!(a, c, "{device}");
        let half = npy::read(&g16).unwrap();
        let wide = npy::read(&gw).unwrap();
        let full = npy::read(&g32).unwrap();
        assert!(matches!(wide.dtype, Dtype::F32), "{device}");
        assert_eq!(half.shape, vec![6, 4]);
        assert_eq!(wide.to_f32().unwrap(), full.to_f32().unwrap(), "{device}");
        if device == "cpu" {
            // The f64 reference's gradient is written in float32 whatever the input.
            assert!(matches!(half.dtype, Dtype::F32));
            assert_eq!(half.to_f32().unwrap(), full.to_f32().unwrap());
            continue;
        }
        assert!(matches!(half.dtype, Dtype::F16), "{device}");
        // The f32 gradient rounded to nearest f16.
        let rounded: Vec<f16> = full
            .to_f32()
            .unwrap()
            .iter()
            .map(|&v| f16::from_f32(v))
            .collect();
        assert_eq!(half.to_f16().unwrap(), rounded, "{device}");
    }
}

#[test]
fn check_and_bench_run_in_f16() {
    if common::gpu().is_none() {
        return;
    }
    let out = cli(&["check", "--batch", "20", "--dim", "5", "--precision", "f16"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("f16 inputs"), "{text}");
    // 303 cases less one: at D = 5 in f16, K = 5's queries opposite their class have two
    // sub-centre cosines too close to call, and the grid leaves that case out.
    assert!(text.contains("302 passed, 0 failed"), "{text}");
    let out = cli(&[
        "bench",
        "--loss",
        "ntxent",
        "--batch",
        "64",
        "--dim",
        "8",
        "--repeat",
        "1",
        "--precision",
        "f16",
        "--json",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert_eq!(
        json_field(text.lines().last().unwrap(), "precision"),
        "\"f16\""
    );
    support::assert_usage_error(
        &["check", "--precision", "f8"],
        "is not a precision (f32 or f16)",
    );
}

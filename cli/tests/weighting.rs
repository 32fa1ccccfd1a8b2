//! `eval --loss multi-similarity|circle` on hand-worked values on both devices (the
//! gradient written), `bench`, and their bad inputs an exit 2 with one line before any
//! device is opened.

mod support;

use support::{assert_usage_error, cli, common, json_field, Dir};

fn devices() -> Vec<&'static str> {
    let mut d = vec!["cpu"];
    if common::gpu().is_some() {
        d.push("gpu");
    }
    d
}

fn loss_of(args: &[&str]) -> (f64, String) {
    let out = cli(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout).trim_end().to_string();
    (json_field(&line, "loss").parse().unwrap(), line)
}

#[test]
fn eval_by_hand() {
    // X = (e1, e1, e2), labels (0, 0, 1) (tests/weighting.rs works the values).
    let d = Dir::new("weighting-ok");
    let x = d.f32s("x.npy", "(3, 2)", &[1.0, 0.0, 1.0, 0.0, 0.0, 1.0]);
    let l = d.i64s("l.npy", &[0, 0, 1]);
    let g = d.path("g.npy");
    let l1 = |v: f64| v.exp().ln_1p();
    let e25 = (-25.0f64).exp();
    let ms = (2.0 * (l1(-1.0) / 2.0 + e25.ln_1p() / 50.0) + (2.0 * e25).ln_1p() / 50.0) / 3.0;
    let circle = (-25.6f64).exp().ln_1p();
    for device in devices() {
        let base = [
            "eval",
            "--embeddings",
            &x,
            "--labels",
            &l,
            "--device",
            device,
        ];
        let grad = ["--grad", g.to_str().unwrap()];
        let (v, line) = loss_of(&[&base[..], &["--loss", "multi-similarity"], &grad].concat());
        assert!((v - ms).abs() < 1e-6 * ms, "{line}: {ms}");
        assert_eq!(json_field(&line, "terms"), "3");
        assert_eq!(json_field(&line, "positive_pairs"), "2");
        assert_eq!(json_field(&line, "negative_pairs"), "4");
        assert_eq!(json_field(&line, "epsilon"), "null");
        assert_eq!(metric_loss_cli::npy::read(&g).unwrap().shape, vec![3, 2]);
        let (v, line) = loss_of(&[&base[..], &["--loss", "circle"]].concat());
        // f32 logits of −12.8 each: their rounding moves e^(−25.6) by about 1e-5 relatively.
        assert!((v - circle).abs() < 1e-4 * circle, "{line}: {circle}");
        assert_eq!(json_field(&line, "terms"), "2");
        assert_eq!(json_field(&line, "gamma"), "80.0");
        // The miner: anchor 0's positive (s = 1) is kept only if 1 − ε < 0, its largest
        // negative: nothing is mined, and PML's rule gives 0.
        let (v, line) = loss_of(
            &[
                &base[..],
                &["--loss", "multi-similarity", "--epsilon", "0.1"],
            ]
            .concat(),
        );
        assert_eq!(v, 0.0, "{line}");
        assert_eq!(json_field(&line, "terms"), "0");
    }
}

#[test]
fn bad_inputs() {
    let d = Dir::new("weighting-bad");
    let x = d.f32s("x.npy", "(3, 2)", &[1.0, 0.0, 1.0, 0.0, 0.0, 1.0]);
    let l = d.i64s("l.npy", &[0, 0, 1]);
    let ms = [
        "eval",
        "--loss",
        "multi-similarity",
        "--embeddings",
        &x,
        "--labels",
        &l,
    ];
    let circle = [
        "eval",
        "--loss",
        "circle",
        "--embeddings",
        &x,
        "--labels",
        &l,
    ];
    assert_usage_error(&[&ms[..], &["--alpha", "0"]].concat(), "alpha");
    assert_usage_error(&[&ms[..], &["--epsilon", "-1"]].concat(), "epsilon");
    assert_usage_error(&[&circle[..], &["--gamma", "nan"]].concat(), "gamma");
    assert_usage_error(&[&circle[..], &["--margin", "-0.5"]].concat(), "m");
    assert_usage_error(
        &[&ms[..], &["--gamma", "8"]].concat(),
        "--gamma does not apply to --loss multi-similarity; it applies to --loss circle",
    );
    assert_usage_error(
        &[&circle[..], &["--epsilon", "0.1"]].concat(),
        "it applies to --loss multi-similarity",
    );
    assert_usage_error(
        &["eval", "--loss", "circle", "--embeddings", &x],
        "needs --embeddings and --labels",
    );
}

#[test]
fn bench_both() {
    if common::gpu().is_none() {
        return;
    }
    for loss in ["multi-similarity", "circle"] {
        let out = cli(&[
            "bench", "--loss", loss, "--batch", "130", "--dim", "16", "--repeat", "1", "--json",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout.lines().last().unwrap();
        assert_eq!(json_field(line, "loss"), format!("\"{loss}\""));
        assert_eq!(json_field(line, "kernel_flops_rule"), "\"6·B²·D\"");
    }
}

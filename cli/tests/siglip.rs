//! `eval --loss siglip` on hand-worked values on both devices (with and without labels, the
//! gradients written), `bench --loss siglip`, and its bad inputs an exit 2 with one line
//! before any device is opened.

mod support;

use support::{assert_usage_error, cli, common, json_field, Dir};

fn devices() -> Vec<&'static str> {
    let mut d = vec!["cpu"];
    if common::gpu().is_some() {
        d.push("gpu");
    }
    d
}

#[test]
fn eval_siglip_by_hand() {
    // A = (e1, e2), B = (e1, 2·e1, e2) at t = 1 (t′ = 0), b = 0: s = [[1, 1, 0], [0, 0, 1]].
    // Matched rows: positives (0,0), (1,1): L = (sp(−1) + sp(1) + sp(0) + sp(0) + sp(0) +
    // sp(1)) / 2 with sp(u) = log(1 + e^u). Labels (7, 8 | 7, 7, 8): positives (0,0),
    // (0,1), (1,2): L = (sp(−1) + sp(−1) + sp(0) + sp(0) + sp(0) + sp(−1)) / 2.
    let sp = |u: f64| (1.0 + u.exp()).ln();
    let plain = (sp(-1.0) + 2.0 * sp(1.0) + 3.0 * sp(0.0)) / 2.0;
    let labelled = (3.0 * sp(-1.0) + 3.0 * sp(0.0)) / 2.0;
    let d = Dir::new("siglip-ok");
    let a = d.f32s("a.npy", "(2, 2)", &[1.0, 0.0, 0.0, 1.0]);
    let b = d.f32s("b.npy", "(3, 2)", &[1.0, 0.0, 2.0, 0.0, 0.0, 1.0]);
    let la = d.i64s("la.npy", &[7, 8]);
    let lb = d.i64s("lb.npy", &[7, 7, 8]);
    let (ga, gb) = (d.path("ga.npy"), d.path("gb.npy"));
    let (gas, gbs) = (ga.to_str().unwrap(), gb.to_str().unwrap());
    for device in devices() {
        for (labels, want, positives) in [(false, plain, "2"), (true, labelled, "3")] {
            let mut args = vec![
                "eval",
                "--loss",
                "siglip",
                "--a",
                &a,
                "--b",
                &b,
                "--log-scale",
                "0",
                "--bias",
                "0",
                "--device",
                device,
                "--grad-a",
                gas,
                "--grad-b",
                gbs,
            ];
            if labels {
                args.extend(["--labels-a", &la, "--labels-b", &lb]);
            }
            let out = cli(&args);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let stdout = String::from_utf8_lossy(&out.stdout);
            let line = stdout.trim_end();
            let v: f64 = json_field(line, "loss").parse().unwrap();
            assert!((v - want).abs() < 1e-5, "{line}: {want}");
            assert_eq!(json_field(line, "terms"), "2");
            assert_eq!(json_field(line, "positive_pairs"), positives);
            assert_eq!(json_field(line, "log_scale"), "0.0");
            for key in ["grad_log_scale", "grad_bias"] {
                assert!(json_field(line, key).parse::<f64>().is_ok(), "{line}");
            }
            assert_eq!(metric_loss_cli::npy::read(&ga).unwrap().shape, vec![2, 2]);
            assert_eq!(metric_loss_cli::npy::read(&gb).unwrap().shape, vec![3, 2]);
        }
    }
    // The defaults (ln 10, −10) are reported when none are given.
    let out = cli(&[
        "eval", "--loss", "siglip", "--a", &a, "--b", &b, "--device", "cpu",
    ]);
    let line = String::from_utf8_lossy(&out.stdout).trim_end().to_string();
    assert_eq!(json_field(&line, "bias"), "-10.0");
    let t: f64 = json_field(&line, "log_scale").parse().unwrap();
    assert!((t - 10f64.ln()).abs() < 1e-6, "{line}");
}

#[test]
fn siglip_bad_inputs() {
    let d = Dir::new("siglip-bad");
    let a = d.f32s("a.npy", "(3, 2)", &[1.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
    let short = d.f32s("s.npy", "(2, 2)", &[1.0, 0.0, 0.0, 1.0]);
    let la = d.i64s("la.npy", &[1, 2, 3]);
    let base = ["eval", "--loss", "siglip", "--a", &a, "--b", &a];
    assert_usage_error(
        &["eval", "--loss", "siglip", "--a", &a, "--b", &short],
        "--b has 2 rows",
    );
    assert_usage_error(
        &["eval", "--loss", "siglip", "--a", &a],
        "needs --a and --b",
    );
    assert_usage_error(&[&base[..], &["--log-scale", "9.5"]].concat(), "log_scale");
    assert_usage_error(&[&base[..], &["--bias", "nan"]].concat(), "bias");
    assert_usage_error(&[&base[..], &["--labels-a", &la]].concat(), "go together");
    assert_usage_error(
        &[&base[..], &["--temperature", "0.1"]].concat(),
        "--temperature does not apply to --loss siglip",
    );
    assert_usage_error(
        &[
            "eval", "--loss", "infonce", "--a", &a, "--b", &a, "--bias", "1",
        ],
        "it applies to --loss siglip",
    );
    assert_usage_error(
        &[
            "bench", "--loss", "siglip", "--batch", "8", "--dim", "4", "--mode", "pairs",
        ],
        "--mode applies to contrastive and triplet",
    );
}

#[test]
fn bench_siglip() {
    if common::gpu().is_none() {
        return;
    }
    let out = cli(&[
        "bench", "--loss", "siglip", "--batch", "130", "--dim", "16", "--repeat", "1", "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap();
    assert_eq!(json_field(line, "loss"), "\"siglip\"");
    assert_eq!(json_field(line, "terms"), "130");
    assert_eq!(json_field(line, "kernel_flops_rule"), "\"8·N²·D\"");
}

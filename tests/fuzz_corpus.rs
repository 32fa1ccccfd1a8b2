//! Replays the committed `cpu_reference` fuzz corpus (fuzz/corpus/cpu_reference/*) and the
//! findings through the target's body (metric_loss::testing::fuzz): nothing may panic, and
//! valid input gives finite output. The CLI's `npy_input` corpus is replayed by
//! cli/tests/fuzz_corpus.rs.

use std::path::Path;

fn replay(target: &str, body: fn(&[u8])) {
    replay_dir(&Path::new("fuzz/corpus").join(target), body);
}

fn replay_dir(dir: &Path, body: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let target = dir.display();
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let result = std::panic::catch_unwind(|| body(&data));
        assert!(result.is_ok(), "{} panicked", path.display());
        n += 1;
    }
    assert!(n > 0, "{target}: empty corpus");
}

#[test]
fn cpu_reference_corpus() {
    replay("cpu_reference", metric_loss::testing::fuzz::cpu_reference);
}

/// The inputs fuzzing found failing (fuzz/findings, see docs/testing.md), kept after their fix.
#[test]
fn findings_stay_fixed() {
    replay_dir(
        Path::new("fuzz/findings"),
        metric_loss::testing::fuzz::cpu_reference,
    );
}

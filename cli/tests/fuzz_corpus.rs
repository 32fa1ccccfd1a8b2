//! Replays the committed `npy_input` fuzz corpus (fuzz/corpus/npy_input/*) through the
//! target's body (metric_loss_cli::fuzz): nothing may panic, and valid input gives finite
//! output.

use std::path::Path;

#[test]
fn npy_input_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/npy_input");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let result = std::panic::catch_unwind(|| metric_loss_cli::fuzz::npy_input(&data));
        assert!(result.is_ok(), "{} panicked", path.display());
        n += 1;
    }
    assert!(n > 0, "{}: empty corpus", dir.display());
}

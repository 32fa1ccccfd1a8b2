//! `.npy` parsing, conversion and input validation (body: metric_loss_cli::fuzz).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| metric_loss_cli::fuzz::npy_input(data));

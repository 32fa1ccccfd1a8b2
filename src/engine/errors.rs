//! Turning wgpu's captured errors into the crate's error type.

use crate::error::Error;

/// Maps an error caught in an error scope to [`Error`]. `during` says what was being done.
pub(crate) fn classify(err: wgpu::Error, during: &'static str) -> Error {
    match err {
        wgpu::Error::OutOfMemory { .. } => Error::OutOfMemory { during },
        wgpu::Error::Validation { description, .. } => Error::Validation {
            during,
            description,
        },
        wgpu::Error::Internal { description, .. } => Error::Validation {
            during,
            description: format!("internal: {description}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> Box<dyn std::error::Error + Send + Sync + 'static> {
        Box::new(std::io::Error::other("driver said no"))
    }

    #[test]
    fn out_of_memory_is_typed() {
        let e = classify(wgpu::Error::OutOfMemory { source: source() }, "allocating");
        assert!(matches!(
            e,
            Error::OutOfMemory {
                during: "allocating"
            }
        ));
        assert!(e.to_string().contains("smaller batch"));
    }

    #[test]
    fn validation_and_internal_keep_the_description() {
        let v = wgpu::Error::Validation {
            source: source(),
            description: "binding 3 too small".into(),
        };
        assert!(matches!(
            classify(v, "dispatch"),
            Error::Validation { description, .. } if description == "binding 3 too small"
        ));
        let i = wgpu::Error::Internal {
            source: source(),
            description: "shader compiler crashed".into(),
        };
        assert!(matches!(
            classify(i, "pipeline"),
            Error::Validation { description, .. } if description.contains("internal: shader compiler")
        ));
    }

    #[test]
    fn map_failure_is_typed() {
        let e = Error::from(wgpu::BufferAsyncError);
        assert!(matches!(e, Error::MapFailed(_)));
        assert!(e.to_string().contains("reading results back"));
    }
}

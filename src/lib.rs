//! The Metrix contracts: messages, clients and servers generated from
//! `proto/`, and the encoded descriptor set that server reflection and the
//! gateway's REST transcoding read.

/// The encoded `FileDescriptorSet` of every file under `proto/` and its imports.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/metrix_descriptor.bin"));

/// Types shared by every service.
pub mod common {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("metrix.common.v1");
    }
}

/// The auth service's contract.
pub mod auth {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("metrix.auth.v1");
    }
}

/// The metrics service's contract.
pub mod metrics {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("metrix.metrics.v1");
    }
}

/// The benchmark service's contract.
pub mod benchmark {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("metrix.benchmark.v1");
    }
}

/// The `google.api` annotation types the contracts use.
pub mod google {
    /// HTTP mapping rules.
    pub mod api {
        tonic::include_proto!("google.api");
    }
}

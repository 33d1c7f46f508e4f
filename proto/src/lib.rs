//! gridcase's gRPC contracts. Generated code stays in this crate; the
//! conversions between these messages and domain types live in each service's
//! `convert` module.

pub mod common {
    pub mod v1 {
        tonic::include_proto!("gridcase.common.v1");
    }
}

pub mod cases {
    pub mod v1 {
        tonic::include_proto!("gridcase.cases.v1");
    }
}

pub mod query {
    pub mod v1 {
        tonic::include_proto!("gridcase.query.v1");
    }
}

pub mod intake {
    pub mod v1 {
        tonic::include_proto!("gridcase.intake.v1");
    }
}

/// The encoded descriptor set of every gridcase proto, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("gridcase_descriptor");

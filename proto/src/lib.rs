//! gridcase's gRPC contracts. Generated code stays in this crate, and so do
//! the conversions between its enums and the domain's values (`convert`),
//! shared by every service, and how a client reaches a service (`client`).

pub mod client;
pub mod convert;

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

pub mod admin {
    pub mod v1 {
        tonic::include_proto!("gridcase.admin.v1");
    }
}

pub mod auth {
    pub mod v1 {
        tonic::include_proto!("gridcase.auth.v1");
    }
}

pub mod intake {
    pub mod v1 {
        tonic::include_proto!("gridcase.intake.v1");
    }
}

/// The encoded descriptor set of every gridcase proto, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("gridcase_descriptor");

//! Code generated from `proto/tokend/v1` by build.rs, and the descriptor set
//! that reflection serves.

#![allow(missing_docs, unused_qualifications, clippy::all, clippy::pedantic)]

tonic::include_proto!("tokend.v1");

/// Every file tokend's protos use, including `google/protobuf` and
/// `google/rpc` imports, encoded as a `FileDescriptorSet`.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/tokend_descriptor.bin"));

//! placeholder
pub mod proto {
    #![allow(missing_docs, clippy::all, unreachable_pub)]
    tonic::include_proto!("net");
}

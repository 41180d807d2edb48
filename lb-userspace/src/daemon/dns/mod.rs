//! Run-time DNS resolution (`resolvers` sections): servers given by host name follow their
//! name while lb runs, as in HAProxy 2.6.
//! - [`wire`]: the DNS messages (pure);
//! - [`resolution`]: when names are asked, how answers and failures move servers (pure);
//! - [`client`]: one task per `resolvers` section, asking its name servers over UDP.
pub mod client;
pub mod resolution;
pub mod wire;

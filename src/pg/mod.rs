//! Talking to PostgreSQL: one resolution of the connection for us and the tools, our own
//! connection, other sessions, and finding the client tools.

pub mod checks;
pub mod cluster;
pub mod conninfo;
pub mod consistency;
pub mod contents;
pub mod databases;
pub mod db;
pub mod pgpass;
pub mod rowcount;
pub mod runner;
pub mod scratch;
pub mod sessions;
pub mod tls;
pub mod tools;

//! The single integration-test binary of aos-backup: a real PostgreSQL server (`harness`), a builder
//! that runs the real `aos-backup` binary (`cmd`), and the test modules that use them.

mod cmd;
mod guards;
mod harness;
mod smoke;

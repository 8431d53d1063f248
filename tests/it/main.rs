//! The single integration-test binary of aos-backup: a real PostgreSQL server (`harness`), a builder
//! that runs the real `aos-backup` binary (`cmd`), and the test modules that use them.

mod catalog;
mod cleanphase;
mod cmd;
mod core;
mod guards;
mod harness;
mod killsafe;
mod perdb;
mod pgpass;
mod pipeline;
mod scripts;
mod secrets;
mod smoke;
mod support;
mod suspect;
mod tls;

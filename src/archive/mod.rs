//! What a backup is and how its bytes move: its layers and format, its name, the stream that
//! writes it, the checks that say it is whole, and the SQL a restore feeds to psql.

pub mod crypto;
pub mod drill;
pub mod dumpcheck;
pub mod format;
pub mod integrity;
pub mod layers;
pub mod meta;
pub mod naming;
pub mod objects;
pub mod sink;
pub mod sqlfeed;
pub mod suspect;
pub mod swaps;

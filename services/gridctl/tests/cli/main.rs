//! gridctl driven as a user runs it (the binary), one module per command
//! group, in one test binary (each links gridctl and the services it talks to).

mod deadline;
mod lifecycle;
mod log;

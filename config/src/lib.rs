//! tether config (see DESIGN.md).

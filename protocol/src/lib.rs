//! tether protocol (see DESIGN.md).

//! Test pods and test clusters made of real network namespaces.

//! libtether_layer.so: loaded into the debuggee with LD_PRELOAD.

// Per-target `enable` directives. Chrome requires `enable subgroups;` before using subgroup
// builtins; naga (native wgpu) rejects it and enables them from the device features.
#if F16
enable f16;
#endif
#if ENABLE_SUBGROUPS_DIRECTIVE
enable subgroups;
#endif

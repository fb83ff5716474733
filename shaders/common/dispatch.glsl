// dispatch.glsl: a compute invocation's flat index, across the several dispatches Program.dispatch splits
// a run into when it exceeds the driver's work-group counts.
//
// Uniforms
//   uint u_invocation_base  the first invocation of this dispatch (0 for the first)
// Include it after the shader's layout(local_size_x = ...) in.
// The index is u_invocation_base + (group.y * groups.x + group.x) * local_size + local, below 2^32.
#ifndef GLNET_DISPATCH_GLSL
#define GLNET_DISPATCH_GLSL

uniform uint u_invocation_base;

uint invocation_id() {
    return u_invocation_base
           + (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * gl_WorkGroupSize.x
           + gl_LocalInvocationID.x;
}

#endif

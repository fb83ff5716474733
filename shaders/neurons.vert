#version 430
// neurons.vert: one point sprite per neuron of the current layer; gl_VertexID is the neuron's index.
// Storage: s_values (binding 0), the layer's values (one part of them: u_first, u_base), bound as a range.
// See common/*.glsl for uniforms.
#include "common/camera.glsl"
#include "common/layer.glsl"
#include "common/colormap.glsl"

layout(std430, binding = 0) readonly buffer Values { float s_values[]; };

flat out uint v_code;
flat out vec2 v_centre;
flat out float v_radius;

void main() {
    uint i = u_first + uint(gl_VertexID);
    Splat s = project_cell(neuron_cell(i));
    v_code = colour_code(s_values[value_index(i)]);
    v_centre = s.centre;
    v_radius = s.radius;
    gl_Position = s.clip;
    // The square must reach every pixel centre within the radius, and the pixel holding the centre.
    gl_PointSize = 2.0 * s.radius + 2.0;
}

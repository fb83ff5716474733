#version 430
// edges.vert: the structure graph's segments as quads of constant pixel width, six vertices a segment.
// Storage s_points (binding 0): vec4 world points, xyz used, two per segment (start, end).
// Uniforms: u_view_proj (world -> clip), u_viewport (framebuffer pixels), u_width (line width in pixels).
// A segment reaching behind the eye is cut where it crosses w = NEAR_W; one wholly behind is dropped.
layout(std430, binding = 0) readonly buffer Points { vec4 s_points[]; };

uniform mat4 u_view_proj;
uniform vec2 u_viewport;
uniform float u_width;

const float NEAR_W = 1e-4;
const int END[6] = int[6](0, 1, 0, 0, 1, 1);
const float SIDE[6] = float[6](-1.0, -1.0, 1.0, 1.0, -1.0, 1.0);

void main() {
    int seg = gl_VertexID / 6;
    int corner = gl_VertexID - seg * 6;
    vec4 a = u_view_proj * vec4(s_points[2 * seg].xyz, 1.0);
    vec4 b = u_view_proj * vec4(s_points[2 * seg + 1].xyz, 1.0);
    if (a.w < NEAR_W && b.w < NEAR_W) {
        gl_Position = vec4(2.0, 2.0, 2.0, 1.0);  // outside the clip volume: nothing drawn
        return;
    }
    if (a.w < NEAR_W) a = mix(a, b, (NEAR_W - a.w) / (b.w - a.w));
    if (b.w < NEAR_W) b = mix(b, a, (NEAR_W - b.w) / (a.w - b.w));
    vec2 half_px = 0.5 * u_viewport;
    vec2 d = (b.xy / b.w - a.xy / a.w) * half_px;
    float len = length(d);
    vec2 along = len > 1e-6 ? d / len : vec2(1.0, 0.0);
    vec2 across = vec2(-along.y, along.x);
    int end = END[corner];
    vec4 p = end == 0 ? a : b;
    // Half a width past each end, so the pieces of an arc overlap at their joints.
    vec2 offset_px = 0.5 * u_width * (SIDE[corner] * across + (end == 0 ? -along : along));
    gl_Position = p + vec4(offset_px / half_px * p.w, 0.0, 0.0);
}

#version 430
// fullscreen.vert: one triangle covering the viewport (no vertex data; gl_VertexID 0..2).
void main() {
    vec2 p = vec2((gl_VertexID << 1) & 2, gl_VertexID & 2);
    gl_Position = vec4(p * 2.0 - 1.0, 0.0, 1.0);
}

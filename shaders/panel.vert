#version 430
// panel.vert: a textured rectangle standing in the scene (a layer's weight atlas, the input image).
// Uniforms: u_view_proj (world -> clip), vec3 u_corner (world top-left), vec2 u_extent (world width, height).
// Texture row 0 is the panel's top row.
uniform mat4 u_view_proj;
uniform vec3 u_corner;
uniform vec2 u_extent;

out vec2 v_uv;

void main() {
    vec2 q = vec2(gl_VertexID & 1, gl_VertexID >> 1);
    v_uv = q;
    gl_Position = u_view_proj * vec4(u_corner + vec3(q.x * u_extent.x, -q.y * u_extent.y, 0.0), 1.0);
}

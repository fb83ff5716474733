#version 430
// overlay.vert: a screen-space rectangle for the HUD. Uniform vec4 u_rect: (x0, y0, x1, y1) in pixels,
// y down from the top; u_viewport: framebuffer size.
uniform vec4 u_rect;
uniform vec2 u_viewport;

out vec2 v_uv;

void main() {
    vec2 q = vec2(gl_VertexID & 1, gl_VertexID >> 1);
    v_uv = q;
    vec2 px = mix(u_rect.xy, u_rect.zw, q);
    gl_Position = vec4(px.x / u_viewport.x * 2.0 - 1.0, 1.0 - px.y / u_viewport.y * 2.0, 0.0, 1.0);
}

#version 430
// overlay.frag: the HUD image (premultiplied alpha), row 0 at the top.
uniform sampler2D u_texture;

in vec2 v_uv;
out vec4 o_colour;

void main() {
    o_colour = texture(u_texture, v_uv);
}

#version 430
// edges.frag: one flat colour for the structure graph. Uniform vec3 u_colour (linear RGB, 0..1).
uniform vec3 u_colour;

out vec4 o_colour;

void main() {
    o_colour = vec4(u_colour, 1.0);
}

// layer.glsl: where neuron i of the current layer sits (positions are derived, never stored).
//
// Uniforms (set once per layer)
//   uvec4 u_grid      (C, H, W, tiles_x): C feature maps of H x W neurons, tiled tiles_x per row
//   uvec2 u_gap       empty cells between tiles (across, down)
//   vec3  u_origin    world position of neuron 0: the slab's top-left corner
//   float u_spacing   world distance between neighbouring neurons
//   float u_diameter  world diameter of a neuron's disc
//   uint  u_count     neurons in the layer (C * H * W)
// Mirrors glnet.layout.neuron_positions().
#ifndef GLNET_LAYER_GLSL
#define GLNET_LAYER_GLSL

uniform uvec4 u_grid;
uniform uvec2 u_gap;
uniform vec3 u_origin;
uniform float u_spacing;
uniform float u_diameter;
uniform uint u_count;

vec3 neuron_position(uint i) {
    uint hw = u_grid.y * u_grid.z;
    uint ch = i / hw;
    uint r = i - ch * hw;
    uint row = r / u_grid.z;
    uint col = r - row * u_grid.z;
    uint tx = ch % u_grid.w;
    uint ty = ch / u_grid.w;
    uint cx = tx * (u_grid.z + u_gap.x) + col;
    uint cy = ty * (u_grid.y + u_gap.y) + row;
    return u_origin + vec3(float(cx) * u_spacing, -float(cy) * u_spacing, 0.0);
}

#endif

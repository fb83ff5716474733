// layer.glsl: where neuron i of the current layer sits (positions are derived, never stored).
//
// Uniforms (set once per layer)
//   uvec4 u_grid      (C, H, W, tiles_x): C feature maps of H x W neurons, tiled tiles_x per row
//   uvec2 u_gap       empty cells between tiles (across, down)
//   vec3  u_inv       (1 / (H * W), 1 / W, 1 / tiles_x): divisions become multiplies (llvmpipe divides slowly)
//   uint  u_count     neurons in the layer (C * H * W)
// and per part of the layer bound (glnet.render.frame.draw_parts: a binding has a size limit)
//   uint  u_first          the part's first neuron (its index in the layer)
//   uint  u_base           where neuron u_first sits in the bound values (its aligned offset's slack)
//   uvec2 u_segment        (neurons per row segment, segments per row): a compute invocation per segment
//   uint  u_first_segment  the part's first segment in the layer
//   uint  u_segments       segments in the part
// A neuron's cell (cx, cy) counts neuron spacings right and down from the slab's top-left corner; world
// position = origin + spacing * (cx, -cy, 0). Mirrors glnet.layout.neuron_positions().
#ifndef GLNET_LAYER_GLSL
#define GLNET_LAYER_GLSL

uniform uvec4 u_grid;
uniform uvec2 u_gap;
uniform vec3 u_inv;
uniform uint u_count;
uniform uint u_first;
uniform uint u_base;
uniform uvec2 u_segment;
uniform uint u_first_segment;
uniform uint u_segments;

// q = n / d for unsigned ints: a float estimate, corrected to the exact quotient with integer ops.
uint divide(uint n, uint d, float inv_d) {
    uint q = uint(float(n) * inv_d);
    int r = int(n) - int(q * d);
    if (r < 0) q -= 1u;
    else if (r >= int(d)) q += 1u;
    return q;
}

vec2 neuron_cell(uint i) {
    uint hw = u_grid.y * u_grid.z;
    uint ch = divide(i, hw, u_inv.x);
    uint r = i - ch * hw;
    uint row = divide(r, u_grid.z, u_inv.y);
    uint col = r - row * u_grid.z;
    uint ty = divide(ch, u_grid.w, u_inv.z);
    uint tx = ch - ty * u_grid.w;
    return vec2(float(tx * (u_grid.z + u_gap.x) + col), float(ty * (u_grid.y + u_gap.y) + row));
}

// Where neuron i of the layer (one of the bound part) is in the bound values.
uint value_index(uint i) {
    return i - u_first + u_base;
}

// The id-th segment of the part: its first neuron (in the layer) and length; false past the part's end.
bool part_segment(uint id, out uint first, out uint count) {
    if (id >= u_segments) return false;
    uint j = u_first_segment + id;
    uint row = j / u_segment.y;  // once per segment: integer division is slow on llvmpipe
    uint seg = j - row * u_segment.y;
    first = row * u_grid.z + seg * u_segment.x;
    count = min(u_segment.x, u_grid.z - seg * u_segment.x);
    return true;
}

#endif

// camera.glsl: projecting a neuron to the window, identically in every renderer.
//
// Uniforms (per layer: the layer's plane in clip space, so a neuron costs a few multiply-adds)
//   vec4  u_clip_origin  projection * view * (slab origin, 1)
//   vec4  u_clip_dx      projection * view * (spacing, 0, 0, 0): one cell to the right
//   vec4  u_clip_dy      projection * view * (0, -spacing, 0, 0): one cell down
//   float u_radius_k     0.5 * disc diameter * focal length in pixels: the radius at view depth 1
//   vec2  u_viewport     framebuffer size in pixels
//   float u_max_radius   largest splat radius in pixels
//
// A neuron is a disc. It covers pixel (px, py) when that pixel holds its centre or when the pixel centre
// lies within the projected radius r = clamp(u_radius_k / w, 0.5, u_max_radius). Points whose centre is
// outside the clip volume are not drawn (as GL clips points).
#ifndef GLNET_CAMERA_GLSL
#define GLNET_CAMERA_GLSL

uniform vec4 u_clip_origin;
uniform vec4 u_clip_dx;
uniform vec4 u_clip_dy;
uniform float u_radius_k;
uniform vec2 u_viewport;
uniform float u_max_radius;

struct Splat {
    vec4 clip;       // clip-space position
    vec2 centre;     // window coordinates in pixels, y up
    float w;         // view depth (distance along the view axis)
    float radius;    // pixels
    bool visible;
};

vec4 cell_clip(vec2 cell) {
    return u_clip_origin + cell.x * u_clip_dx + cell.y * u_clip_dy;
}

bool clip_inside(vec4 clip) {
    return clip.w > 0.0 && all(lessThanEqual(abs(clip.xyz), vec3(clip.w)));
}

vec2 clip_to_window(vec4 clip, float inv_w) {
    return (clip.xy * inv_w * 0.5 + 0.5) * u_viewport;
}

Splat project_cell(vec2 cell) {
    Splat s;
    s.clip = cell_clip(cell);
    s.w = s.clip.w;
    s.visible = clip_inside(s.clip);
    float inv_w = 1.0 / s.w;
    s.centre = clip_to_window(s.clip, inv_w);
    s.radius = clamp(u_radius_k * inv_w, 0.5, u_max_radius);
    return s;
}

bool splat_covers(vec2 pixel_centre, vec2 centre, float radius) {
    if (all(equal(floor(pixel_centre), floor(centre)))) return true;
    vec2 d = pixel_centre - centre;
    return dot(d, d) <= radius * radius;
}

#endif

// camera.glsl: projecting a neuron to the window, identically in every renderer.
//
// Uniforms
//   mat4  u_view_proj    projection * view (world -> clip)
//   vec2  u_viewport     framebuffer size in pixels
//   float u_focal_px     pixels per world unit at view depth 1 (0.5 * height / tan(fov / 2))
//   float u_max_radius   largest splat radius in pixels
//
// A neuron is a disc of world diameter d. It covers pixel (px, py) when that pixel holds its centre or when
// the pixel centre lies within the projected radius r = clamp(0.5 * d * u_focal_px / w, 0.5, u_max_radius).
// Points whose centre is outside the clip volume are not drawn (as GL clips points).
#ifndef GLNET_CAMERA_GLSL
#define GLNET_CAMERA_GLSL

uniform mat4 u_view_proj;
uniform vec2 u_viewport;
uniform float u_focal_px;
uniform float u_max_radius;

struct Splat {
    vec4 clip;       // clip-space position
    vec2 centre;     // window coordinates in pixels, y up
    float w;         // view depth (distance along the view axis)
    float radius;    // pixels
    bool visible;
};

Splat project_neuron(vec3 world, float diameter) {
    Splat s;
    s.clip = u_view_proj * vec4(world, 1.0);
    s.w = s.clip.w;
    s.visible = s.w > 0.0 && all(lessThanEqual(abs(s.clip.xyz), vec3(s.w)));
    vec2 ndc = s.clip.xy / s.w;
    s.centre = (ndc * 0.5 + 0.5) * u_viewport;
    s.radius = clamp(0.5 * diameter * u_focal_px / s.w, 0.5, u_max_radius);
    return s;
}

bool splat_covers(vec2 pixel_centre, vec2 centre, float radius) {
    if (all(equal(floor(pixel_centre), floor(centre)))) return true;
    vec2 d = pixel_centre - centre;
    return dot(d, d) <= radius * radius;
}

#endif

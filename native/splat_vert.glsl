/* Vertex stage of the Gaussian splat viewport shader: one instance per splat, 4 corners each.
 *
 * Declared by blender/splat_gpu.py with gpu.types.GPUShaderCreateInfo (so Blender translates it
 * for OpenGL, Vulkan and Metal). Inputs, all set by splat_gpu.py:
 *   corner            vertex attribute, quad corner in {-1, 1}^2
 *   order_tex         R32F, instance -> splat index, farthest splat first
 *   geom_tex          RGBA32F, 3 texels per splat: mean.xyz opacity | cov xx xy xz yy | cov yz zz
 *   sh_tex            RGBA16F/32F, SH_TEXELS texels per splat: coefficients k-major, RGB-minor
 *   skin_tex          RGBA32F, 2 texels per splat: 4 bone indices | 4 weights (when skinned)
 *   bone_tex          RGBA32F, 4 texels (columns) per bone: rest object frame -> posed object frame
 *   params            uniform block (a UBO: too big for portable push constants):
 *     model_view        object frame -> OpenGL view frame (x right, y up, looking down -z)
 *     projection        OpenGL projection (perspective or orthographic)
 *     viewport          width, height (pixels), splat size factor, near plane
 *     camera_far        camera centre in the object frame (view direction for SH), far plane
 *     flags             sh_degree, skinned, linear_output
 * The maths follows the project's rendering conventions (gsplat 1.5.3's pinhole model): camera
 * covariance W Sigma W^T, Jacobian with tx/tz, ty/tz clamped to 1.3x the half extent, +0.3 px^2,
 * radius ceil(3.33 sigma), culled when depth <= near or det <= 0. Pixel coordinates are OpenCV
 * style (y down, origin at the top-left corner of the image).
 */

#define FETCH(tex, texel) texelFetch(tex, ivec2((texel) % DATA_WIDTH, (texel) / DATA_WIDTH), 0)

mat4 bone_matrix(float index)
{
  int column = 4 * int(index);
  return mat4(texelFetch(bone_tex, ivec2(column, 0), 0), texelFetch(bone_tex, ivec2(column + 1, 0), 0),
              texelFetch(bone_tex, ivec2(column + 2, 0), 0), texelFetch(bone_tex, ivec2(column + 3, 0), 0));
}

vec3 sh_colour(int splat, vec3 dir)
{
  vec4 raw[SH_TEXELS];
  for (int i = 0; i < SH_TEXELS; i++) {
    raw[i] = FETCH(sh_tex, splat * SH_TEXELS + i);
  }
#define COEF(k) vec3(raw[(3 * (k)) / 4][(3 * (k)) % 4], raw[(3 * (k) + 1) / 4][(3 * (k) + 1) % 4], \
                     raw[(3 * (k) + 2) / 4][(3 * (k) + 2) % 4])
  vec3 colour = 0.5 + SH_C0 * COEF(0);
#if SH_COEFFICIENTS > 1
  float x = dir.x, y = dir.y, z = dir.z;
  if (params.flags.x >= 1) {
    colour += -SH_C1 * y * COEF(1) + SH_C1 * z * COEF(2) - SH_C1 * x * COEF(3);
  }
#endif
#if SH_COEFFICIENTS > 4
  float xx = x * x, yy = y * y, zz = z * z;
  if (params.flags.x >= 2) {
    colour += SH_C2_0 * x * y * COEF(4) + SH_C2_1 * y * z * COEF(5) +
              SH_C2_2 * (2.0 * zz - xx - yy) * COEF(6) + SH_C2_3 * x * z * COEF(7) +
              SH_C2_4 * (xx - yy) * COEF(8);
  }
#endif
#if SH_COEFFICIENTS > 9
  if (params.flags.x >= 3) {
    colour += SH_C3_0 * y * (3.0 * xx - yy) * COEF(9) + SH_C3_1 * x * y * z * COEF(10) +
              SH_C3_2 * y * (4.0 * zz - xx - yy) * COEF(11) +
              SH_C3_3 * z * (2.0 * zz - 3.0 * xx - 3.0 * yy) * COEF(12) +
              SH_C3_4 * x * (4.0 * zz - xx - yy) * COEF(13) + SH_C3_5 * z * (xx - yy) * COEF(14) +
              SH_C3_6 * x * (xx - 3.0 * yy) * COEF(15);
  }
#endif
#undef COEF
  return max(colour, vec3(0.0));
}

void cull()
{
  gl_Position = vec4(0.0, 0.0, 2.0, 1.0); /* outside the clip volume: the quad draws nothing */
  offset = vec2(0.0);
  conic = vec3(0.0);
  colour_opacity = vec4(0.0);
}

void main()
{
  int splat = int(FETCH(order_tex, gl_InstanceID).r);
  vec4 g0 = FETCH(geom_tex, 3 * splat);
  vec4 g1 = FETCH(geom_tex, 3 * splat + 1);
  vec4 g2 = FETCH(geom_tex, 3 * splat + 2);
  float size_factor = params.viewport.z;
  mat3 cov = mat3(g1.x, g1.y, g1.z, g1.y, g1.w, g2.x, g1.z, g2.x, g2.y) * (size_factor * size_factor);
  vec4 p_object = vec4(g0.xyz, 1.0);
  vec3 view_dir = g0.xyz - params.camera_far.xyz;

  if (params.flags.y != 0) {
    vec4 index = FETCH(skin_tex, 2 * splat);
    vec4 weight = FETCH(skin_tex, 2 * splat + 1);
    mat4 skin = weight.x * bone_matrix(index.x) + weight.y * bone_matrix(index.y) +
                weight.z * bone_matrix(index.z) + weight.w * bone_matrix(index.w);
    p_object = skin * p_object;
    mat3 skin_linear = mat3(skin);
    cov = skin_linear * cov * transpose(skin_linear);
    /* SH are stored in the rest frame: look at them along the direction taken back there. */
    view_dir = inverse(skin_linear) * (p_object.xyz - params.camera_far.xyz);
  }

  vec4 p_view = params.model_view * p_object;
  /* OpenCV camera frame: x right, y down, z forward. */
  vec3 t = vec3(p_view.x, -p_view.y, -p_view.z);
  mat3 to_cam = mat3(1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, -1.0) * mat3(params.model_view);
  mat3 cov_cam = to_cam * cov * transpose(to_cam);

  float width = params.viewport.x, height = params.viewport.y;
  float fx = params.projection[0][0] * width * 0.5;
  float fy = params.projection[1][1] * height * 0.5;
  bool perspective = params.projection[3][3] == 0.0;
  vec3 j0, j1;
  if (perspective) {
    if (t.z <= params.viewport.w || t.z >= params.camera_far.w) {
      cull();
      return;
    }
    float cx = (1.0 - params.projection[2][0]) * width * 0.5;
    float cy = (1.0 + params.projection[2][1]) * height * 0.5;
    float tan_x = 0.5 * width / fx, tan_y = 0.5 * height / fy;
    float tx = t.z * clamp(t.x / t.z, -(cx / fx + 0.3 * tan_x), (width - cx) / fx + 0.3 * tan_x);
    float ty = t.z * clamp(t.y / t.z, -(cy / fy + 0.3 * tan_y), (height - cy) / fy + 0.3 * tan_y);
    j0 = vec3(fx / t.z, 0.0, -fx * tx / (t.z * t.z));
    j1 = vec3(0.0, fy / t.z, -fy * ty / (t.z * t.z));
  }
  else {
    j0 = vec3(fx, 0.0, 0.0);
    j1 = vec3(0.0, fy, 0.0);
  }
  float a = dot(j0, cov_cam * j0) + 0.3;
  float b = dot(j0, cov_cam * j1);
  float c = dot(j1, cov_cam * j1) + 0.3;
  float det = a * c - b * b;
  if (det <= 0.0) {
    cull();
    return;
  }

  vec4 clip = params.projection * p_view;
  vec3 ndc = clip.xyz / clip.w;
  vec2 mean2d = vec2((ndc.x + 1.0) * 0.5 * width, (1.0 - ndc.y) * 0.5 * height);
  vec2 radius = ceil(3.33 * sqrt(vec2(a, c)));
  offset = corner * radius;
  vec2 pixel = mean2d + offset;
  gl_Position = vec4(2.0 * pixel.x / width - 1.0, 1.0 - 2.0 * pixel.y / height, ndc.z, 1.0);

  conic = vec3(c, -b, a) / det;
  vec3 colour = sh_colour(splat, normalize(view_dir));
  if (params.flags.z != 0) {
    /* The viewport framebuffer encodes linear values to sRGB itself; 3DGS colours are sRGB. */
    colour = mix(colour / 12.92, pow((colour + 0.055) / 1.055, vec3(2.4)), step(0.04045, colour));
  }
  colour_opacity = vec4(colour, g0.w);
}

/* Fragment stage of the Gaussian splat viewport shader: the 2D Gaussian of one splat.
 *
 * offset is this pixel centre minus the splat's projected mean, in pixels (y down); conic is the
 * inverse 2D covariance (a, b, c). Alpha and the 1/255 cut follow the project's rendering
 * conventions; the output is premultiplied for blend 'ALPHA_PREMULT', splats drawn back to front.
 */

void main()
{
  float sigma = 0.5 * (conic.x * offset.x * offset.x + conic.z * offset.y * offset.y) +
                conic.y * offset.x * offset.y;
  if (sigma < 0.0) {
    discard;
  }
  float alpha = min(0.99, colour_opacity.a * exp(-sigma));
  if (alpha < 1.0 / 255.0) {
    discard;
  }
  fragColor = vec4(colour_opacity.rgb * alpha, alpha);
}

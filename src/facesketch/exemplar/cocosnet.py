"""CoCosNet (Zhang et al., CVPR 2020) as microsoft/CoCosNet builds it, and CoCosNet + HIDA.

Read from the reference (models/networks/{correspondence,generator,architecture,normalization,
discriminator}.py) with the edge-to-face options of its README (--use_attention --maskmix --PONO
--PONO_C --warp_bilinear, match_kernel 3, warp_stride 4, CBN_intype warp_mask, norm_G/E/D spectral):

- Correspondence: two domain adaptors (3x3 conv 64, 3x3 s2 128, 3x3 256, s2 512, 3x3 512 with
  spectral norm + parameter-free instance norm, then three SPADE residual blocks 512-512-512-256,
  each conditioned on its own input), features L2-normalised per position; with maskmix the input
  semantics are concatenated, four residual blocks (reflection pad, conv, IN, PReLU) shared by both
  sides; theta/phi 1x1 convs to 256; 3x3 patches unfolded, centred over channels (PONO_C), unit
  norm; correlation softmax with temperature 0.01 warps the 4x average-pooled exemplar; the
  transposed correlation warps it back (the cycle loss).
- Translation: SPADE generator, 16ngf at crop/32, head + two middle blocks, 4 up blocks, self-
  attention at 4ngf; every SPADE (positional norm, PONO) is conditioned on cat(warped exemplar,
  input semantics); conv_img after LeakyReLU 0.2, tanh.
- D: two-scale PatchGAN (4 layers, 64-128-256-512, spectral instance norm, self-attention before
  the last stride-1 layer), on cat(semantics, image); feature-matching features from each layer.

CoCosNet + HIDA (Table 4): the depth map joins the input semantics (edge, depth) of both sides, and
each SPADE + LeakyReLU of the translation network becomes DySPADE + InfoACON (facesketch.models.layers):
a condition branch (3x3 conv + metaACON over the same condition, SPADE's 128 channels wide unless
``condition_width`` says otherwise) whose gamma/beta heads modulate IN(x) as DySPADE does, K + x as
HIDA's released code adds it, and whose theta head drives InfoACON. The paper says no more than
"replacing SPADE with DySPADE and InfoACON"; this is our reading. (HIDA's own branch is as wide as
its layer; at CoCosNet's 1024-channel layers that would triple the generator, 92M -> 311M.)
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

from facesketch.models.layers import DySPADE, InfoACON, MetaACON


def positional_norm(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """PONO: normalise each position over channels (the reference's PositionalNorm2d)."""
    return (x - x.mean(dim=1, keepdim=True)) / x.var(dim=1, keepdim=True).add(eps).sqrt()


def feature_normalize(x: torch.Tensor) -> torch.Tensor:
    return x / (torch.norm(x, 2, 1, keepdim=True) + sys.float_info.epsilon)


class SPADE(nn.Module):
    """SPADE with a parameter-free PONO (or IN) and a 128-channel 3x3 MLP, reflection padded."""

    def __init__(self, channels: int, label_nc: int, pono: bool = True, hidden: int = 128):
        super().__init__()
        self.pono = pono
        self.mlp_shared = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(label_nc, hidden, 3), nn.ReLU())
        self.pad = nn.ReflectionPad2d(1)
        self.mlp_gamma = nn.Conv2d(hidden, channels, 3)
        self.mlp_beta = nn.Conv2d(hidden, channels, 3)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        normalized = positional_norm(x) if self.pono else F.instance_norm(x)
        actv = self.mlp_shared(F.interpolate(seg, size=x.shape[2:], mode="nearest"))
        return normalized * (1 + self.mlp_gamma(self.pad(actv))) + self.mlp_beta(self.pad(actv))


class SPADEAct(nn.Module):
    """SPADE then LeakyReLU 0.2: the normalise-and-activate step of a SPADE residual block."""

    def __init__(self, channels: int, label_nc: int, pono: bool = True):
        super().__init__()
        self.norm = SPADE(channels, label_nc, pono)

    def forward(self, x, seg):
        return F.leaky_relu(self.norm(x, seg), 0.2)


class DySPADEInfoACON(nn.Module):
    """HIDA's replacement of SPADE + activation: shared 3x3 conv (``hidden`` wide: SPADE's 128 by
    default, or the layer's width as in HIDA's U-Net) + metaACON over the condition, then 3x3 heads
    gamma, beta (DySPADE on IN(x), plus x as in HIDA's code) and theta (InfoACON)."""

    heads_used = ("gamma", "beta", "theta")

    def __init__(self, channels: int, label_nc: int, hidden: int | None = 128):
        super().__init__()
        hidden = hidden or channels
        self.shared = nn.Conv2d(label_nc, hidden, 3, padding=1)
        self.act_shared = MetaACON(hidden)
        self.heads = nn.ModuleDict({h: nn.Conv2d(hidden, channels, 3, padding=1) for h in self.heads_used})
        self.norm = DySPADE("code")
        self.act = InfoACON(channels) if "theta" in self.heads_used else None

    def forward(self, x, seg):
        h = self.act_shared(self.shared(F.interpolate(seg, size=x.shape[2:], mode="nearest")))
        mod = {name: conv(h) for name, conv in self.heads.items()}
        return self.act(self.norm(x, x, mod), mod["theta"])


def norm_act(kind: str, channels: int, label_nc: int, hidden: int | None = 128) -> nn.Module:
    if kind == "spade":
        return SPADEAct(channels, label_nc)
    if kind == "dyspade_infoacon":
        return DySPADEInfoACON(channels, label_nc, hidden)
    raise ValueError(f"unknown translation norm {kind!r}")


class SPADEResnetBlock(nn.Module):
    """The reference's SPADE residual block: reflection-padded spectral 3x3 convs, a learned 1x1
    shortcut (SPADE, no activation) when the width changes."""

    def __init__(self, fin: int, fout: int, label_nc: int, norm: str = "spade", hidden: int | None = 128):
        super().__init__()
        fmid = min(fin, fout)
        self.learned_shortcut = fin != fout
        self.conv_0 = spectral_norm(nn.Conv2d(fin, fmid, 3))
        self.conv_1 = spectral_norm(nn.Conv2d(fmid, fout, 3))
        self.norm_0 = norm_act(norm, fin, label_nc, hidden)
        self.norm_1 = norm_act(norm, fmid, label_nc, hidden)
        if self.learned_shortcut:
            self.conv_s = spectral_norm(nn.Conv2d(fin, fout, 1, bias=False))
            self.norm_s = SPADE(fin, label_nc) if norm == "spade" else DySPADEShortcut(fin, label_nc, hidden)
        self.pad = nn.ReflectionPad2d(1)

    def forward(self, x, seg):
        x_s = self.conv_s(self.norm_s(x, seg)) if self.learned_shortcut else x
        dx = self.conv_0(self.pad(self.norm_0(x, seg)))
        dx = self.conv_1(self.pad(self.norm_1(dx, seg)))
        return x_s + dx


class DySPADEShortcut(DySPADEInfoACON):
    """The shortcut's normalisation in the HIDA version: DySPADE (K + x) without activation (SPADE's
    shortcut has none either)."""

    heads_used = ("gamma", "beta")

    def forward(self, x, seg):
        h = self.act_shared(self.shared(F.interpolate(seg, size=x.shape[2:], mode="nearest")))
        return self.norm(x, x, {name: conv(h) for name, conv in self.heads.items()})


class Attention(nn.Module):
    """SAGAN self-attention as the reference has it (bias-free 1x1 convs, 2x2 max-pooled keys)."""

    def __init__(self, ch: int, sn: bool = True):
        super().__init__()
        wrap = spectral_norm if sn else (lambda m: m)
        self.ch = ch
        self.theta = wrap(nn.Conv2d(ch, ch // 8, 1, bias=False))
        self.phi = wrap(nn.Conv2d(ch, ch // 8, 1, bias=False))
        self.g = wrap(nn.Conv2d(ch, ch // 2, 1, bias=False))
        self.o = wrap(nn.Conv2d(ch // 2, ch, 1, bias=False))
        self.gamma = nn.Parameter(torch.tensor(0.0))

    def forward(self, x):
        b, _, h, w = x.shape
        theta = self.theta(x).view(b, self.ch // 8, h * w)
        phi = F.max_pool2d(self.phi(x), 2).view(b, self.ch // 8, h * w // 4)
        g = F.max_pool2d(self.g(x), 2).view(b, self.ch // 2, h * w // 4)
        beta = F.softmax(torch.bmm(theta.transpose(1, 2), phi), -1)
        o = self.o(torch.bmm(g, beta.transpose(1, 2)).view(b, self.ch // 2, h, w))
        return self.gamma * o + x


def sn_in_conv(cin: int, cout: int, k: int, stride: int, padding: int) -> nn.Sequential:
    """The reference's 'spectralinstance' layer: spectral-norm conv without bias, then IN (no affine)."""
    return nn.Sequential(spectral_norm(nn.Conv2d(cin, cout, k, stride=stride, padding=padding, bias=False)),
                         nn.InstanceNorm2d(cout, affine=False))


class AdaptiveFeatureGenerator(nn.Module):
    """A domain adaptor: the input to a 256-channel feature map at 1/4 of its size."""

    def __init__(self, in_nc: int, ngf: int = 64, adaptor_kernel: int = 3):
        super().__init__()
        self.layer1 = sn_in_conv(in_nc, ngf, 3, 1, 1)
        self.layer2 = sn_in_conv(ngf, ngf * 2, adaptor_kernel, 2, 1)
        self.layer3 = sn_in_conv(ngf * 2, ngf * 4, 3, 1, 1)
        self.layer4 = sn_in_conv(ngf * 4, ngf * 8, adaptor_kernel, 2, 1)
        self.layer5 = sn_in_conv(ngf * 8, ngf * 8, 3, 1, 1)
        self.head_0 = SPADEResnetBlock(8 * ngf, 8 * ngf, in_nc)
        self.G_middle_0 = SPADEResnetBlock(8 * ngf, 8 * ngf, in_nc)
        self.G_middle_1 = SPADEResnetBlock(8 * ngf, 4 * ngf, in_nc)

    def forward(self, x):
        seg = x
        x = self.layer1(x)
        for layer in (self.layer2, self.layer3, self.layer4, self.layer5):
            x = layer(F.leaky_relu(x, 0.2))
        return self.G_middle_1(self.G_middle_0(self.head_0(x, seg), seg), seg)


class ResidualBlock(nn.Module):
    """The correspondence trunk's block: two reflection-padded 3x3 convs with IN and one shared PReLU."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3)
        self.conv2 = nn.Conv2d(ch, ch, 3)
        self.prelu = nn.PReLU()

    def forward(self, x):
        out = self.prelu(F.instance_norm(self.conv1(F.pad(x, (1,) * 4, mode="reflect"))))
        out = F.instance_norm(self.conv2(F.pad(out, (1,) * 4, mode="reflect")))
        return self.prelu(out + x)


class Correspondence(nn.Module):
    """Cross-domain correspondence: the exemplar warped onto the input's layout."""

    def __init__(self, semantic_nc: int, ngf: int = 64, adaptor_kernel: int = 3, match_kernel: int = 3,
                 temperature: float = 0.01, down: int = 4):
        super().__init__()
        self.adaptive_model_seg = AdaptiveFeatureGenerator(semantic_nc, ngf, adaptor_kernel)
        self.adaptive_model_img = AdaptiveFeatureGenerator(3, ngf, adaptor_kernel)
        ch = 4 * ngf + semantic_nc  # maskmix: the semantics join the features on both sides
        self.layer = nn.Sequential(*[ResidualBlock(ch) for _ in range(4)])
        self.inter = 256
        self.theta = nn.Conv2d(ch, self.inter, 1)
        self.phi = nn.Conv2d(ch, self.inter, 1)
        self.match_kernel, self.temperature, self.down = match_kernel, temperature, down

    def _unit(self, f: torch.Tensor) -> torch.Tensor:
        f = F.unfold(f, self.match_kernel, padding=self.match_kernel // 2)
        f = f - f.mean(dim=1, keepdim=True)  # PONO_C: centred over channels
        return f / (torch.norm(f, 2, 1, keepdim=True) + sys.float_info.epsilon)

    def forward(self, ref_img, seg, ref_seg, real_img=None) -> dict[str, torch.Tensor]:
        b, _, h, w = ref_img.shape
        fh, fw = h // self.down, w // self.down
        feat_seg = feature_normalize(self.adaptive_model_seg(seg))
        feat_img = feature_normalize(self.adaptive_model_img(ref_img))
        out = {}
        if real_img is not None:  # domain alignment: the input's features against its own painting's
            out["feat_seg"] = feat_seg
            out["feat_real"] = feature_normalize(self.adaptive_model_img(real_img))
        s = F.interpolate(seg, size=feat_seg.shape[2:], mode="nearest")
        rs = F.interpolate(ref_seg, size=feat_img.shape[2:], mode="nearest")
        cont = self.layer(torch.cat((feat_seg, s), 1))
        ref = self.layer(torch.cat((feat_img, rs), 1))
        theta = self._unit(self.theta(cont)).permute(0, 2, 1)
        phi = self._unit(self.phi(ref))
        corr = torch.matmul(theta, phi) / self.temperature
        pooled = F.avg_pool2d(ref_img, self.down).view(b, ref_img.shape[1], -1).permute(0, 2, 1)
        warped = torch.matmul(F.softmax(corr, dim=-1), pooled)
        warp = warped.permute(0, 2, 1).reshape(b, -1, fh, fw)
        out["warp_out"] = F.interpolate(warp, scale_factor=self.down, mode="bilinear")
        back = torch.matmul(F.softmax(corr.transpose(1, 2), dim=-1), warped)
        out["warp_cycle"] = back.permute(0, 2, 1).reshape(b, -1, fh, fw)
        return out


class SPADEGenerator(nn.Module):
    """The translation network: from the condition (warped exemplar, semantics) to the painting."""

    def __init__(self, semantic_nc: int, ngf: int = 64, size: int = 256, norm: str = "spade", attention: bool = True,
                 hidden: int | None = 128):
        super().__init__()
        if size % 32 or size < 64:  # 5 upsamplings from a reflection-padded size/32 >= 2
            raise ValueError(f"CoCosNet's generator needs a size of 64 or more divisible by 32, not {size}")
        nf, ic = ngf, 3 + semantic_nc
        self.sw = size // 32
        self.fc = nn.Conv2d(ic, 16 * nf, 3, padding=1)
        self.head_0 = SPADEResnetBlock(16 * nf, 16 * nf, ic, norm, hidden)
        self.G_middle_0 = SPADEResnetBlock(16 * nf, 16 * nf, ic, norm, hidden)
        self.G_middle_1 = SPADEResnetBlock(16 * nf, 16 * nf, ic, norm, hidden)
        self.up_0 = SPADEResnetBlock(16 * nf, 8 * nf, ic, norm, hidden)
        self.up_1 = SPADEResnetBlock(8 * nf, 4 * nf, ic, norm, hidden)
        self.attn = Attention(4 * nf) if attention else nn.Identity()
        self.up_2 = SPADEResnetBlock(4 * nf, 2 * nf, ic, norm, hidden)
        self.up_3 = SPADEResnetBlock(2 * nf, nf, ic, norm, hidden)
        self.conv_img = nn.Conv2d(nf, 3, 3, padding=1)

    def forward(self, cond: torch.Tensor) -> torch.Tensor:
        up = lambda t: F.interpolate(t, scale_factor=2)  # noqa: E731 (nearest, as nn.Upsample)
        x = self.fc(F.interpolate(cond, size=(self.sw, self.sw)))
        x = up(self.head_0(x, cond))
        x = self.G_middle_1(self.G_middle_0(x, cond), cond)
        x = up(self.up_0(up(x), cond))
        x = self.up_1(x, cond)
        x = self.up_2(self.attn(up(x)), cond)
        x = self.up_3(up(x), cond)
        return torch.tanh(self.conv_img(F.leaky_relu(x, 0.2)))


class CoCosNet(nn.Module):
    """Correspondence + translation: ``forward(seg, ref_img, ref_seg)`` -> (painting, correspondence outputs)."""

    def __init__(self, semantic_nc: int, ngf: int = 64, size: int = 256, norm: str = "spade",
                 adaptor_kernel: int = 3, attention: bool = True, temperature: float = 0.01, hidden: int | None = 128):
        super().__init__()
        self.corr = Correspondence(semantic_nc, ngf, adaptor_kernel, temperature=temperature)
        self.G = SPADEGenerator(semantic_nc, ngf, size, norm, attention, hidden)

    def forward(self, seg, ref_img, ref_seg, real_img=None):
        out = self.corr(ref_img, seg, ref_seg, real_img)
        return self.G(torch.cat((out["warp_out"], seg), 1)), out


class NLayerDiscriminator(nn.Module):
    """One scale: conv s2 + LReLU, then spectral-IN convs (s2, s2, s1) with attention before the last,
    then a 1-channel conv; returns every layer's output (feature matching)."""

    def __init__(self, in_nc: int, ndf: int = 64, n_layers: int = 4, attention: bool = True):
        super().__init__()
        layers = [nn.Sequential(nn.Conv2d(in_nc, ndf, 4, 2, 1), nn.LeakyReLU(0.2))]  # padw = int(3 / 2)
        nf = ndf
        self.attn = None
        for n in range(1, n_layers):
            prev, nf = nf, min(nf * 2, 512)
            if attention and n == n_layers - 1:
                self.attn = Attention(prev)
            layers.append(nn.Sequential(sn_in_conv(prev, nf, 4, 1 if n == n_layers - 1 else 2, 1), nn.LeakyReLU(0.2)))
        layers.append(nn.Sequential(nn.Conv2d(nf, 1, 4, 1, 1)))
        self.model = nn.ModuleList(layers)
        self.attn_at = n_layers - 1

    def forward(self, x):
        feats = []
        for i, layer in enumerate(self.model):
            if i == self.attn_at and self.attn is not None:
                x = self.attn(x)
            x = layer(x)
            feats.append(x)
        return feats


class MultiscaleDiscriminator(nn.Module):
    def __init__(self, in_nc: int, ndf: int = 64, n_layers: int = 4, num_d: int = 2, attention: bool = True):
        super().__init__()
        self.ds = nn.ModuleList([NLayerDiscriminator(in_nc, ndf, n_layers, attention) for _ in range(num_d)])

    def forward(self, x):
        out = []
        for d in self.ds:
            out.append(d(x))
            x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
        return out


def init_weights(net: nn.Module, gain: float = 0.02) -> None:
    """The reference's xavier init (gain = init_variance 0.02) of conv and linear weights, biases 0.

    BaseNetwork.init_weights writes ``m.weight.data``. Under spectral norm that attribute is a plain
    tensor sharing ``weight_orig``'s storage only until the module moves: the reference calls
    ``net.cuda()`` before ``init_weights``, so on its GPUs the write lands in a stale CPU copy and the
    spectral-norm layers keep PyTorch's default init. That is what is done here, on any device."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)) and isinstance(getattr(m, "weight", None), nn.Parameter):
            nn.init.xavier_normal_(m.weight, gain=gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def semantic_channels(spec: dict) -> int:
    """Edge map (1 channel) plus the depth map when the variant takes it."""
    return 1 + int(bool(spec.get("depth_input", False)))


def build(spec: dict) -> tuple[CoCosNet, MultiscaleDiscriminator]:
    nc = semantic_channels(spec)
    g = CoCosNet(nc, spec.get("ngf", 64), int(spec["size"]), spec.get("norm", "spade"),
                 spec.get("adaptor_kernel", 3), spec.get("attention", True), spec.get("temperature", 0.01),
                 spec.get("condition_width", 128))
    d = MultiscaleDiscriminator(nc + 3, spec.get("ndf", 64), spec.get("n_layers_d", 4), spec.get("num_d", 2),
                                spec.get("attention", True))
    init_weights(g)
    init_weights(d)
    return g, d

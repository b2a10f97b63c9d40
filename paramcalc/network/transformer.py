"""Transformer specs lowered to a TransformerNetwork: embeddings, layer
groups (identical layers anywhere in the stack form one stage), final norm,
head; with the sequence lengths, widths, rotary tables and activation
profile the analyses ask the network for."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from paramcalc.blocks.attention import Attention
from paramcalc.blocks.base import Activations, Block
from paramcalc.blocks.disentangled import ConvLayer, DisentangledAttention, RelativeTable
from paramcalc.blocks.embed import DecoderPositions, Discriminator, Embeddings, LMHead, Pooler
from paramcalc.blocks.layer import TransformerLayer
from paramcalc.blocks.linear import Linear
from paramcalc.blocks.mla import LatentAttention
from paramcalc.blocks.mlp import MLP
from paramcalc.blocks.moe import MoE
from paramcalc.blocks.norm import Norm
from paramcalc.inputs.spec import TransformerSpec
from paramcalc.network.network import Stage, TransformerNetwork
from paramcalc.network.ssm import ssm_mixer


def lower_transformer(spec: TransformerSpec) -> TransformerNetwork:
    """Embeddings, layer groups, final norm and head; adapters and frozen parts
    are applied by network/adapters.py."""
    stages = _vit_stages(spec) if spec.architecture == "vit" else _speech_stages(spec) if spec.audio else _stages(spec)
    if spec.vision:
        stages = _vision_stages(spec) + stages
    n = spec.num_attention_heads
    mixer_only = spec.ssm is not None and not spec.ssm.attention_layers  # a Mamba stack: no heads
    profile = Activations(attention_dropout=spec.attention_dropout > 0, hidden_dropout=spec.hidden_dropout > 0,
                          embedding_dropout=spec.embedding_dropout > 0, softmax_fp32=spec.softmax_fp32,
                          scores_fp32=spec.scores_fp32, attention_output_dropout=spec.attention_output_dropout)
    rotary = 0
    if spec.position_embedding == "rope":
        d = spec.mla.qk_rope_head_dim if spec.mla else spec.attention_head_dim
        rotary = 2 * -(-int(d * spec.rotary_pct) // 2)  # cos/sin of width 2 x ceil(rotary dims / 2) (GPT-NeoX)
    learned = spec.max_position_embeddings if spec.position_embedding == "learned" else None
    fixed, note = None, ""
    if spec.architecture == "vit":
        image, patch = _vit_sizes(spec)
        fixed = (image // patch) ** 2 + 1
        note = f"{fixed} tokens per image: ({spec.image_size}/{spec.patch_size})^2 patches + the class token"
    vision = spec.vision
    # the default length: 2048, or the learned-position limit when smaller (GPT-2: 1024, BERT: 512);
    # T5's relative buckets were trained at 512
    default = min(2048, learned) if learned else 512 if spec.position_embedding == "relative" else 2048
    return TransformerNetwork(
        name=spec.name or "model", stages=tuple(stages), expected_params=spec.expected_params,
        kind=spec.architecture, hidden=spec.hidden_size, heads=0 if mixer_only else n,
        kv_heads=0 if mixer_only else spec.kv_heads,
        score_dim=spec.mla.qk_nope_head_dim + spec.mla.qk_rope_head_dim if spec.mla else spec.attention_head_dim,
        ffn=spec.intermediate_size, rotary_dim=rotary, positions=learned, default_seq=default, fixed_seq=fixed,
        fixed_seq_note=note, profile=profile, training_seq=spec.training_seq_len,
        encoder_seq=spec.audio.max_source_positions if spec.audio else None,
        vision_seq=vision.positions if vision else None,
        vision_image=vision.image_size if vision else None,
        image_tokens=vision.image_tokens if vision and spec.architecture == "decoder" else None)


def score_head(net: TransformerNetwork) -> TransformerNetwork:
    """The network with one score per token instead of its head (transformers'
    *ForSequenceClassification with num_labels=1): a reward model or a critic.
    Decoders score with a bias-free h x 1 linear, encoders through BERT's pooler; a
    network whose head is no LM head scores already."""
    if not isinstance(net.head, LMHead):
        return net
    head: Block = Linear(net.hidden, 1) if net.kind == "decoder" else Pooler(net.hidden, 1)
    stages = net.stages[:-1] + (Stage("head", head),)
    return replace(net, name=f"{net.name} (scalar head)", stages=stages)


def _stages(spec: TransformerSpec) -> list[Stage]:
    h, V = spec.hidden_size, _vocab(spec)
    norm = _norm(spec)
    learned = spec.position_embedding == "learned"
    positions = (spec.max_position_embeddings or 0) + spec.position_offset if learned else 0
    project = spec.word_embed_proj_dim if spec.word_embed_proj_dim not in (None, h) else None
    narrow = spec.embedding_size if spec.embedding_size not in (None, h) else None
    width = narrow or project or h
    stages = [Stage("embedding", Embeddings(
        vocab=V, dim=width, positions=positions, token_types=spec.type_vocab_size,
        norm=(_norm(spec, narrow) if narrow else norm) if spec.embedding_norm else None,
        project_to=h if width != h else None, narrow=narrow is not None))]
    if spec.disentangled:  # DeBERTa-v2: the relative table every layer projects
        table = spec.disentangled
        stages.append(Stage("relative_embeddings", RelativeTable(
            2 * table.attention_span, h, norm if table.norm_rel_ebd else None)))

    if spec.architecture == "encoder-decoder":
        for stack, count, cross in (("encoder", spec.num_hidden_layers, False),
                                    ("decoder", spec.num_decoder_layers or spec.num_hidden_layers, True)):
            if cross and positions:  # BART: the decoder has its own position table and embedding norm
                stages.append(Stage("decoder/embedding", DecoderPositions(
                    positions, h, norm if spec.embedding_norm else None)))
            first, rest = (_layer(spec, i, causal=cross, cross=cross, relative=(i == 0)) for i in (0, 1))
            stages.append(Stage(f"{stack}/layers.0", first))
            if count > 1:
                stages.append(Stage(f"{stack}/layers", rest, count - 1))
            if spec.final_norm:
                stages.append(Stage(f"{stack}/final_norm", norm))
    elif spec.num_hidden_groups:  # ALBERT: every step runs one group's inner_group_num layers
        runs, held = (n * spec.inner_group_num for n in (spec.num_hidden_layers, spec.num_hidden_groups))
        stages.append(Stage("layers", _layer(spec, 0, causal=False), runs, shared=held))
    else:
        causal = spec.architecture in ("decoder", "clip")  # CLIP's text tower: a causal mask (modeling_clip)
        # identical layers anywhere in the stack form one stage; a layer is built once per distinct
        # way the spec sets it (what `_layer` reads of i), not once per layer
        kinds: dict[tuple, list[int]] = {}
        for i in range(spec.num_hidden_layers):
            kinds.setdefault(_layer_kind(spec, i), [i, 0])[1] += 1
        merged: Counter[TransformerLayer] = Counter()
        for index, count in kinds.values():
            merged[_layer(spec, index, causal=causal, relative=(index == 0))] += count
        for block, count in merged.items():
            stages.append(Stage(_layer_label(block, len(merged)), block, count))
        if spec.final_norm:
            stages.append(Stage("final_norm", norm))
    if spec.disentangled and spec.disentangled.conv_kernel_size:  # DeBERTa-v2's ConvLayer beside layer 0
        conv = spec.disentangled
        stages.append(Stage("conv", ConvLayer(h, conv.conv_kernel_size, conv.conv_groups, norm)))

    stages.append(Stage("head", _head(spec, norm, project)))
    return stages


def _speech_stages(spec: TransformerSpec) -> list[Stage]:
    """Whisper (Radford et al. 2022, section 2.2 and figure 1; transformers' modeling_whisper):
    the encoder runs on the audio front end's S positions (blocks/audio.py) whatever the
    decoder's length: pre-norm layers with GELU MLPs, a final LayerNorm. The decoder embeds
    tokens with a learned position table (max_target_positions) and runs pre-norm layers
    with cross-attention over the S encoder positions, a final LayerNorm and the LM head
    (proj_out, tied to the token table by default)."""
    from paramcalc.blocks.audio import AudioFrontEnd
    from paramcalc.blocks.fixed import FixedLength

    audio = spec.audio
    assert audio is not None, "called for a speech spec"
    S, h, norm = audio.max_source_positions, spec.hidden_size, _norm(spec)
    positions = spec.max_position_embeddings if spec.position_embedding == "learned" else 0
    return [
        Stage("encoder/embedding", FixedLength(AudioFrontEnd(audio.num_mel_bins, h, S), S)),
        Stage("encoder/layers", FixedLength(_layer(spec, 0, causal=False), S), spec.num_hidden_layers),
        Stage("encoder/final_norm", FixedLength(norm, S)),
        Stage("embedding", Embeddings(vocab=_vocab(spec), dim=h, positions=positions or 0)),
        Stage("decoder/layers", _layer(spec, 0, causal=True, cross=True),
              spec.num_decoder_layers or spec.num_hidden_layers),
        Stage("decoder/final_norm", norm),
        Stage("head", _head(spec, norm, None)),
    ]


def _vit_stages(spec: TransformerSpec) -> list[Stage]:
    """Dosovitskiy et al. 2021, eq. 1-4: patch embeddings with a class token and
    learned positions, pre-norm encoder layers (LayerNorm, MHA, a GELU MLP),
    a final norm and a linear classifier on the class token. CLIP's vision tower
    (Radford et al. 2021; modeling_clip.CLIPVisionModel) has a bias-free patch conv and
    a LayerNorm before the layers (pre_layrnorm: embedding_norm); its post_layernorm
    normalises the class token alone, here every position (params and FLOPs the same,
    the saved bytes high by fp32 mean and rstd of the other rows)."""
    from paramcalc.blocks.vit import ClassTokenHead, PatchEmbeddings

    image, patch = _vit_sizes(spec)
    embed = PatchEmbeddings(spec.num_channels, (image, image), patch, spec.hidden_size, spec.patch_bias)
    stages = [Stage("embedding", embed)]
    if spec.embedding_norm:
        stages.append(Stage("pre_layrnorm", _norm(spec)))
    stages.append(Stage("layers", _layer(spec, 0, causal=False), spec.num_hidden_layers))
    if spec.final_norm:
        stages.append(Stage("final_norm", _norm(spec)))
    head: Block
    if spec.head == "classifier":
        head = ClassTokenHead(spec.hidden_size, spec.num_labels)
    else:  # transformers' ViTModel pools the class token (dense + tanh)
        head = Pooler(spec.hidden_size) if spec.head == "pooler" else _NoHead()
    stages.append(Stage("head", head))
    return stages


def _vision_stages(spec: TransformerSpec) -> list[Stage]:
    """A CLIP vision tower beside CLIP's text tower or in front of LLaVA's language model:
    CLIPVisionModel's stages (as _vit_stages lowers them) run on one image's positions per
    sample, whatever the text's length; post_layernorm on the class token alone. LLaVA (Liu
    et al. 2023; modeling_llava.LlavaModel.get_image_features) runs every layer (transformers
    5.24 keeps the selected hidden state, vision_feature_layer, and discards the rest: the
    default -2 leaves the last layer's output unused, its FLOPs still spent), then the
    projector on the image tokens, which take their places in the decoder's sequence."""
    from paramcalc.blocks.fixed import FixedLength
    from paramcalc.blocks.projector import Projector
    from paramcalc.blocks.vit import ClassTokenNorm

    v = spec.vision
    assert v is not None, "called for a spec with a vision tower"
    tower = TransformerSpec(architecture="vit", image_size=v.image_size, patch_size=v.patch_size,
                            num_channels=v.num_channels, patch_bias=False, hidden_size=v.hidden_size,
                            num_hidden_layers=v.num_hidden_layers, num_attention_heads=v.num_attention_heads,
                            intermediate_size=v.intermediate_size, hidden_act=v.hidden_act, mlp="plain",
                            mlp_bias=True, qkv_bias=True, o_bias=True, norm="layernorm", embedding_norm=True,
                            position_embedding="none", attention_dropout=v.attention_dropout, head="none")
    stages = []
    for stage in _vit_stages(tower):
        if stage.name == "final_norm":  # post_layernorm: the class token alone
            stages.append(Stage("vision/post_layernorm", FixedLength(ClassTokenNorm(_norm(tower), v.positions), 1)))
        elif stage.name != "head":
            stages.append(replace(stage, name=f"vision/{stage.name}", block=FixedLength(stage.block, v.positions)))
    if v.projector_hidden_act:
        projector = Projector(v.hidden_size * v.feature_layers, spec.hidden_size, v.projector_hidden_act,
                              v.projector_bias)
        stages.append(Stage("multi_modal_projector", FixedLength(projector, v.image_tokens)))
    return stages


def _layer_kind(spec: TransformerSpec, i: int) -> tuple:
    """All that `_layer` reads of the layer's index: layers of one kind are built alike."""
    attention = spec.ssm is not None and i in spec.ssm.attention_layers
    moe = spec.moe is not None and spec.moe.is_moe_layer(i)
    return (i == 0, spec.window(i), attention, moe)


def _layer(spec: TransformerSpec, i: int, *, causal: bool, cross: bool = False,
           relative: bool = False) -> TransformerLayer:
    if spec.ssm and i not in spec.ssm.attention_layers:
        # Mamba: x + mixer(norm(x)), no feed-forward block (network/ssm.py); Jamba's mixer layers
        # add the feed-forward block as attention layers do (modeling_jamba.JambaMambaDecoderLayer)
        mixer = ssm_mixer(spec.hidden_size, spec.ssm)
        return TransformerLayer(mixer, _feed_forward(spec, i) if spec.ssm.feed_forward else None, _norm(spec))
    h, n, g, d = spec.hidden_size, spec.num_attention_heads, spec.kv_heads, spec.attention_head_dim
    buckets = spec.relative_attention_num_buckets if (relative and spec.position_embedding == "relative") else 0
    attention: Attention | LatentAttention
    if spec.mla:
        mla = spec.mla
        attention = LatentAttention(h, n, mla.q_lora_rank, mla.kv_lora_rank, mla.qk_nope_head_dim,
                                    mla.qk_rope_head_dim, mla.v_head_dim, bias=spec.qkv_bias)
    else:
        q_norm = k_norm = None
        if spec.qk_norm:
            whole = spec.qk_norm_over == "projection"
            bias = spec.norm_bias if spec.qk_norm_bias is None else spec.qk_norm_bias
            q_norm, k_norm = (replace(_norm(spec, width * d if whole else d), bias=bias) for width in (n, g))
        attention = Attention(h, n, g, d, spec.qkv_bias, spec.o_bias, q_norm, k_norm, causal=causal,
                              window=spec.window(i), relative_buckets=buckets,
                              softcap=spec.attn_logit_softcapping is not None, fused_views=spec.fused_qkv,
                              sinks=spec.attention_sinks, k_bias=spec.k_proj_bias)
        if spec.disentangled:
            attention = _disentangled(spec)
    memory = spec.audio.max_source_positions if spec.audio else None  # Whisper: the encoder's fixed length
    cross_attention = Attention(h, n, n, d, spec.qkv_bias, spec.o_bias, causal=False, cross=True,
                                k_bias=spec.k_proj_bias, memory=memory) if cross else None
    return TransformerLayer(attention, _feed_forward(spec, i), _norm(spec), spec.layout, cross_attention)


def _feed_forward(spec: TransformerSpec, i: int) -> MLP | MoE:
    """Layer i's feed-forward block: the dense MLP, or routed experts where the spec's MoE layout says."""
    h = spec.hidden_size
    mlp: MLP | MoE = MLP(h, spec.intermediate_size, spec.mlp == "gated", spec.mlp_bias, spec.hidden_act,
                         spec.mlp_inner_dropout)
    if spec.moe and spec.moe.is_moe_layer(i):
        moe = spec.moe
        expert = MLP(h, moe.moe_intermediate_size or spec.intermediate_size, spec.mlp == "gated", spec.mlp_bias,
                     spec.hidden_act)
        shared = MLP(h, moe.shared_expert_intermediate_size, expert.gated, spec.mlp_bias, spec.hidden_act) \
            if moe.shared_expert_intermediate_size else None
        mlp = MoE(h, moe.num_experts, moe.num_experts_per_tok, expert, shared, moe.shared_expert_gate,
                  moe.router_bias, moe.score_correction_bias)
    return mlp


def _disentangled(spec: TransformerSpec) -> DisentangledAttention:
    """DeBERTa-v2's attention: BERT's biased projections and the relative-position terms."""
    table = spec.disentangled
    assert table is not None, "called for a spec with disentangled attention"
    return DisentangledAttention(spec.hidden_size, spec.num_attention_heads, spec.num_attention_heads,
                                 spec.attention_head_dim, spec.qkv_bias, spec.o_bias, causal=False,
                                 span=table.attention_span, c2p="c2p" in table.pos_att_type,
                                 p2c="p2c" in table.pos_att_type, share_keys=table.share_att_key)


def _norm(spec: TransformerSpec, dim: int | None = None) -> Norm:
    style = spec.layernorm_style if spec.norm == "layernorm" else spec.rmsnorm_style
    return Norm(dim or spec.hidden_size, spec.norm, spec.norm_bias, affine=spec.norm_affine, style=style)


def _layer_label(layer: TransformerLayer, groups: int) -> str:
    if groups == 1:
        return "layers"
    tags = ["moe" if isinstance(layer.mlp, MoE) else "dense"]
    if layer.attention.kind == "mixer":  # Jamba: Mamba layers beside attention layers
        tags.append("mamba")
    if isinstance(layer.attention, Attention):
        tags.append(f"window {layer.attention.window}" if layer.attention.window else "full")
        if layer.attention.relative_buckets:
            tags.append("relative bias")
    return f"layers ({', '.join(tags)})"


def _head(spec: TransformerSpec, norm: Norm, project: int | None) -> Block:
    h, V = spec.hidden_size, _vocab(spec)
    if spec.head == "lm":
        return LMHead(h, V, tied=spec.tie_word_embeddings, bias=spec.lm_head_bias, project_to=project,
                      loss_fp32=spec.architecture == "decoder", softcap=spec.final_logit_softcapping is not None)
    if spec.head == "mlm":  # BERT: transform + LayerNorm, decoder tied to the word table, vocab bias
        width = spec.embedding_size or h  # ELECTRA's generator transforms down to its table's width
        return LMHead(h, V, tied=spec.tie_word_embeddings, bias=True, transform_norm=_norm(spec, width),
                      loss_fp32=False, transform_act=spec.hidden_act)
    if spec.head == "contrastive":
        from paramcalc.blocks.clip import ContrastiveHead

        assert spec.vision and spec.projection_dim, "the validator requires both"
        return ContrastiveHead(h, spec.vision.hidden_size, spec.projection_dim)
    if spec.head == "discriminator":
        return Discriminator(h)
    if spec.head == "pooler":
        return Pooler(h)
    if spec.head == "classifier":
        if spec.architecture in ("encoder", "encoder-decoder"):  # BERT's pooler + classifier; T5's dense + out_proj
            return Pooler(h, spec.num_labels)
        return Linear(h, spec.num_labels)  # decoders score every token with a bias-free h x labels
    if spec.head == "token-classifier":  # transformers' *ForTokenClassification: labels per token, with a bias
        return Linear(h, spec.num_labels, bias=True)
    if spec.head == "qa":  # *ForQuestionAnswering: start and end logits per token (BERT: num_labels of them)
        return Linear(h, 2 if spec.architecture == "decoder" else spec.num_labels, bias=True)
    return _NoHead()


def _vocab(spec: TransformerSpec) -> int:
    """The token table's rows, which the spec's validator requires of every architecture but vit."""
    assert spec.vocab_size is not None, "a validated spec has vocab_size unless it is a vit"
    return spec.vocab_size


def _vit_sizes(spec: TransformerSpec) -> tuple[int, int]:
    """A vit's image_size and patch_size, which the spec's validator requires."""
    assert spec.image_size is not None and spec.patch_size is not None, "a validated vit spec has both"
    return spec.image_size, spec.patch_size


class _NoHead(Block):
    kind = "head"

    def module(self, a: Activations | None = None):
        from torch import nn

        return nn.Identity()

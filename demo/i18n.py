"""The web app's words, in English and Chinese.

Static labels go to the browser through ``gr.I18n`` (the browser's locale picks the language). Text made at run
time (toasts, the timing line, table headers, the batch summary) is formatted here on the server, in the language
of ``--lang`` or, in "auto" mode, of the request's Accept-Language header.
"""

from __future__ import annotations

from matting.notices import Notice

LANGUAGES = ("en", "zh")

EN: dict[str, str] = {
    # layout
    "title": "Image matting",
    "subtitle": "Drop a photo and the subject is cut out on this machine: nothing is sent anywhere else.",
    "tab_single": "Single image",
    "tab_batch": "Batch",
    "input": "Photo: drop, paste or click to upload",
    "examples": "Examples (one click)",
    "result": "Result",
    "view_result": "Cutout",
    "view_matte": "Alpha matte",
    "view_compare": "Before / after",
    "live_empty": "Drop a photo on the left: its cutout appears here, and the edge sliders redraw it as you drag.",
    "crop": "Crop to the subject",
    "crop_info": "downloads and batch outputs: the subject's box plus the margin",
    "crop_margin": "Margin (px, or % of the box)",
    "brush_erase": "Erase",
    "brush_restore": "Restore",
    "brush_size": "Brush",
    "brush_undo": "Undo",
    "brush_redo": "Redo",
    "brush_clear": "Clear strokes",
    "brush_hint": "Paint over the picture: Erase removes what the model kept, Restore brings back what it dropped. "
                  "Strokes stay through every slider and go into the downloads.",
    "edges": "Edges",
    "threshold": "Alpha threshold",
    "threshold_info": "0 keeps soft edges; higher cuts the matte to hard edges at this level",
    "feather": "Feather (px)",
    "feather_info": "softens the edge (Gaussian blur of the matte)",
    "erode": "Erode / dilate (px)",
    "erode_info": "negative shrinks the subject, positive grows it",
    "refine": "Refine edges with the photo (guided filter)",
    "refine_radius": "Refinement radius",
    "use_input_alpha": "Keep the upload's own transparency",
    "decontaminate": "Remove the old background's colour from soft edges",
    "reset": "Reset edges",
    "background": "Background",
    "bg_mode": "Composite on",
    "bg_transparent": "Transparent",
    "bg_color": "Colour",
    "bg_image": "Image",
    "bg_color_pick": "Background colour",
    "bg_image_upload": "Background image",
    "downloads": "Download at full resolution",
    "dl_rgba": "Cutout PNG (RGBA)",
    "dl_alpha": "Alpha matte PNG",
    "dl_composite": "Composite JPEG",
    "dl_files": "Prepared downloads",
    "batch_intro": "Drop many images or .zip archives. Each file is reported on its own: a bad file never stops "
                   "the batch. The edge and background settings on the right apply to every image.",
    "batch_files": "Images or .zip archives",
    "batch_include": "Put in the zip",
    "kind_cutout": "Cutouts (PNG)",
    "kind_alpha": "Alpha mattes (PNG)",
    "kind_composite": "Composites (JPEG, current background)",
    "batch_run": "Run batch",
    "batch_cancel": "Cancel",
    "batch_table": "Results",
    "batch_gallery": "Cutouts",
    "batch_zip": "Results (zip)",
}

ZH: dict[str, str] = {
    "title": "图像抠图",
    "subtitle": "拖入一张照片，主体在本机被抠出：图片不会发送到任何其他地方。",
    "tab_single": "单张图片",
    "tab_batch": "批量处理",
    "input": "照片：拖放、粘贴或点击上传",
    "examples": "示例（点击即用）",
    "result": "结果",
    "view_result": "抠图",
    "view_matte": "Alpha 蒙版",
    "view_compare": "前后对比",
    "live_empty": "在左侧放入一张照片：抠图结果显示在这里，拖动边缘滑块时会实时重绘。",
    "crop": "裁剪到主体",
    "crop_info": "下载和批量输出：主体的边界框加上边距",
    "crop_margin": "边距（像素，或边界框的百分比）",
    "brush_erase": "擦除",
    "brush_restore": "恢复",
    "brush_size": "笔刷",
    "brush_undo": "撤销",
    "brush_redo": "重做",
    "brush_clear": "清除笔画",
    "brush_hint": "在图上涂抹：“擦除”去掉模型误留的部分，“恢复”找回模型漏掉的部分。"
                  "笔画在调整任何滑块后都会保留，并进入下载文件。",
    "edges": "边缘",
    "threshold": "Alpha 阈值",
    "threshold_info": "0 保留柔和边缘；调高则在该值处把蒙版切成硬边",
    "feather": "羽化（像素）",
    "feather_info": "柔化边缘（对蒙版做高斯模糊）",
    "erode": "收缩 / 扩张（像素）",
    "erode_info": "负值收缩主体，正值扩张主体",
    "refine": "按照片细化边缘（导向滤波）",
    "refine_radius": "细化半径",
    "use_input_alpha": "保留上传图片自身的透明度",
    "decontaminate": "去除柔和边缘上旧背景的颜色",
    "reset": "重置边缘设置",
    "background": "背景",
    "bg_mode": "合成到",
    "bg_transparent": "透明",
    "bg_color": "纯色",
    "bg_image": "图片",
    "bg_color_pick": "背景颜色",
    "bg_image_upload": "背景图片",
    "downloads": "下载全分辨率结果",
    "dl_rgba": "抠图 PNG（RGBA）",
    "dl_alpha": "Alpha 蒙版 PNG",
    "dl_composite": "合成图 JPEG",
    "dl_files": "已生成的下载文件",
    "batch_intro": "拖入多张图片或 .zip 压缩包。每个文件单独报告结果：坏文件不会中断批处理。右侧的边缘与背景设置"
                   "应用于每一张图片。",
    "batch_files": "图片或 .zip 压缩包",
    "batch_include": "压缩包内容",
    "kind_cutout": "抠图（PNG）",
    "kind_alpha": "Alpha 蒙版（PNG）",
    "kind_composite": "合成图（JPEG，当前背景）",
    "batch_run": "开始批量处理",
    "batch_cancel": "取消",
    "batch_table": "结果",
    "batch_gallery": "抠图预览",
    "batch_zip": "结果（zip）",
}

# Formatted on the server with str.format.
RUNTIME_EN: dict[str, str] = {
    "info": "Model **{model}** · device **{device}** · precision **{precision}** · "
            "working size up to {max_side} px · loaded in {load_ms} ms",
    "reduced": "Large image: {w0} × {h0} was reduced to {w1} × {h1} for processing. The server keeps the longer "
               "side within {limit} px so edits stay fast and memory stays bounded (its --max-side option "
               "raises the limit). Downloads come out at {w1} × {h1}.",
    "notice": "{text}",
    "failed": "Could not process this image: {error}",
    "toast_info": "Note",
    "toast_warning": "Warning",
    "toast_error": "Error",
    "bad_setting": "Invalid setting: {error}",
    "bad_background": "Could not use this background image: {error}",
    "bad_hint": "Could not use this hint mask: {error}",
    "no_image": "Upload an image first.",
    "no_background_image": "Upload a background image first (or choose a colour).",
    "upload_expired": "This photo is no longer kept on the server (uploads are kept for a while only): please "
                      "upload it again.",
    "no_files": "Add some images or .zip archives first.",
    "too_many_files": "Too many files: {n} (at most {limit} per batch).",
    "stage_decode": "Decoding the image and running the network",
    "stage_render": "Rendering edges",
    "stage_encode": "Writing previews",
    "stage_download": "Encoding the full-resolution file",
    "stage_batch": "Image {i} of {n}",
    "timing_first": "{size} · decode {decode} ms · network {network} ms · render {render} ms · "
                    "encode {encode} ms · total {total} ms",
    "timing_cached": "{size} · decode {decode} ms · network: cached, not run again · render {render} ms · "
                     "encode {encode} ms · total {total} ms",
    "timing_render": "{size} · re-rendered from the cached matte (network not run) · render {render} ms · "
                     "encode {encode} ms · total {total} ms",
    "size": "{w} × {h} px",
    "size_reduced": "{w0} × {h0} → {w} × {h} px",
    "col_name": "File",
    "col_size": "Size",
    "col_time": "Time (ms)",
    "col_status": "Status / error",
    "status_done": "done",
    "status_skipped": "skipped",
    "status_failed": "failed: {error}",
    "batch_summary": "{done} done, {failed} failed, {skipped} skipped in {seconds:.1f} s "
                     "({rate:.2f} images/s).",
    "batch_cancelled": "Cancelled: {finished} file(s) finished before the stop; the zip holds those.",
    "batch_cancelling": "Stopping the batch after the images in flight…",
    "batch_none_done": "No image came out; see the table for each file's error.",
}

RUNTIME_ZH: dict[str, str] = {
    "info": "模型 **{model}** · 设备 **{device}** · 精度 **{precision}** · 处理尺寸上限 {max_side} 像素 · "
            "加载用时 {load_ms} 毫秒",
    "reduced": "大图：{w0} × {h0} 已缩小为 {w1} × {h1} 再处理。服务器把长边限制在 {limit} 像素以内，"
               "以保证调整流畅、内存可控（服务器的 --max-side 参数可调高上限）。下载结果为 {w1} × {h1}。",
    "notice": "{text}",
    "failed": "无法处理这张图片：{error}",
    "toast_info": "提示",
    "toast_warning": "警告",
    "toast_error": "错误",
    "bad_setting": "设置无效：{error}",
    "bad_background": "无法使用这张背景图片：{error}",
    "bad_hint": "无法使用这张提示蒙版：{error}",
    "no_image": "请先上传图片。",
    "no_background_image": "请先上传背景图片（或选择一种颜色）。",
    "upload_expired": "服务器上已不再保存这张照片（上传的文件只保留一段时间）：请重新上传。",
    "no_files": "请先添加图片或 .zip 压缩包。",
    "too_many_files": "文件太多：{n} 个（每批最多 {limit} 个）。",
    "stage_decode": "解码图片并运行网络",
    "stage_render": "渲染边缘",
    "stage_encode": "生成预览",
    "stage_download": "编码全分辨率文件",
    "stage_batch": "第 {i} / {n} 张",
    "timing_first": "{size} · 解码 {decode} 毫秒 · 网络 {network} 毫秒 · 渲染 {render} 毫秒 · "
                    "编码 {encode} 毫秒 · 合计 {total} 毫秒",
    "timing_cached": "{size} · 解码 {decode} 毫秒 · 网络：命中缓存，未重新运行 · 渲染 {render} 毫秒 · "
                     "编码 {encode} 毫秒 · 合计 {total} 毫秒",
    "timing_render": "{size} · 由缓存的蒙版重新渲染（网络未运行） · 渲染 {render} 毫秒 · "
                     "编码 {encode} 毫秒 · 合计 {total} 毫秒",
    "size": "{w} × {h} 像素",
    "size_reduced": "{w0} × {h0} → {w} × {h} 像素",
    "col_name": "文件",
    "col_size": "尺寸",
    "col_time": "用时（毫秒）",
    "col_status": "状态 / 错误",
    "status_done": "完成",
    "status_skipped": "已跳过",
    "status_failed": "失败：{error}",
    "batch_summary": "完成 {done} 张，失败 {failed} 个，跳过 {skipped} 个，用时 {seconds:.1f} 秒"
                     "（每秒 {rate:.2f} 张）。",
    "batch_cancelled": "已取消：停止前完成了 {finished} 个文件，压缩包中包含这些结果。",
    "batch_cancelling": "正在停止批处理（等待进行中的图片完成）…",
    "batch_none_done": "没有图片处理成功；请查看表格中每个文件的错误。",
}

_STATIC = {"en": EN, "zh": ZH}
_RUNTIME = {"en": RUNTIME_EN, "zh": RUNTIME_ZH}

# Locale codes the Gradio frontend may pick (its own language list). With a forced --lang every one of them gets
# the chosen language's strings, so the browser's locale no longer matters for our labels.
FRONTEND_LOCALES = ("ar", "ca", "ckb", "de", "en", "es", "et", "eu", "fa", "fi", "fr", "he", "hi", "ja", "ko", "lt",
                    "nb", "nl", "pl", "pt-BR", "pt", "ro", "ru", "sv", "ta", "th", "tr", "uk", "ur", "uz", "zh-CN",
                    "zh-TW", "zh")


def check_lang(lang: str) -> str:
    lang = (lang or "auto").strip().lower()
    if lang not in ("auto", *LANGUAGES):
        raise ValueError(f"unknown language {lang!r}: use auto, en or zh")
    return lang


def translations(lang: str = "auto") -> dict[str, dict[str, str]]:
    """Keyword arguments for ``gr.I18n``: per-locale dicts, all the same language when ``lang`` is forced."""
    lang = check_lang(lang)
    if lang == "auto":
        return {"en": EN, "zh": ZH, "zh-CN": ZH, "zh-TW": ZH}
    return {locale: _STATIC[lang] for locale in FRONTEND_LOCALES}


def language_from_header(accept_language: str | None) -> str:
    """'zh' or 'en' from an Accept-Language header: whichever of the two the user ranks higher; 'en' otherwise."""
    best, best_q = "en", -1.0
    for position, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        tag = tag.strip().lower()
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        base = tag.split("-")[0]
        if base in LANGUAGES:
            score = q - position * 1e-6   # ties go to the earlier entry
            if score > best_q:
                best, best_q = base, score
    return best


# The engine's notices carry a code and parameters (matting/notices.py); the English UI shows the engine's own
# sentence, the Chinese UI these by code. "reduced" has the UI's own wording in both (RUNTIME "reduced").
_NOTICES: dict[str, dict[str, str]] = {
    "zh": {
        "bit_depth_16": "16 位图像已转换为 8 位",
        "bit_depth_32": "32 位图像已缩放为 8 位",
        "floating_point": "浮点图像已转换为 8 位",
        "cmyk": "CMYK 图像已转换为 RGB，颜色可能略有差异",
        "clipped": "超出 0 到 1 的数值已被截断",
        "animated": "动图（{label}）：只使用第一帧",
        "tiff_pages": "多页 TIFF：只使用第一页",
        "multi_frame": "多帧图像：只使用当前帧",
        "gpu_out_of_memory": "GPU 内存不足，这张图片改用 CPU 处理。",
        "decoder_warning": "解码器警告：{detail}（图片仍已读取）",
        "redone": "已重新生成：原有输出是用其他设置、其他模型或旧版输入生成的",
        "removed": "已删除 {name}：它用其他设置生成，这次没有要求输出",
    },
}


# The engine's errors are English one-liners naming the file and the specifics; the Chinese UI puts what kind of
# problem it is first, in Chinese, and keeps the specifics (file name, sizes, format) after it.
_ERROR_KINDS: dict[str, dict[str, str]] = {
    "zh": {
        "empty_input": "文件是空的",
        "unsupported_format": "不是支持的图片格式，请上传 JPEG、PNG、WebP、BMP、TIFF 或 GIF",
        "corrupt_image": "图片文件已损坏或不完整",
        "image_too_large": "图片太大",
        "image_too_small": "图片太小",
        "invalid_parameter": "参数无效",
        "model_load_error": "模型无法加载",
        "inference_error": "模型无法运行",
        # the batch's own kinds (matting.batch.BatchResult.error_code)
        "input_error": "无法读取这个输入",
        "output_error": "无法使用输出位置",
        "ray_unavailable": "无法使用 Ray",
        "write_error": "无法写入输出文件",
        "out_of_memory": "内存不足",
        "unexpected": "意外错误",
    },
}


class Texts:
    """Run-time strings in one language: ``t("key", name=value)``."""

    def __init__(self, lang: str):
        self.lang = lang if lang in LANGUAGES else "en"
        self._table = _RUNTIME[self.lang]

    def __call__(self, key: str, **values) -> str:
        return self._table[key].format(**values)

    def error(self, exc: BaseException | str, code: str | None = None) -> str:
        """An engine error for this visitor: in Chinese its kind first, then the engine's own details. ``code``
        names the kind when ``exc`` is only the message (a batch result's)."""
        kind = _ERROR_KINDS.get(self.lang, {}).get(code or getattr(exc, "code", ""))
        return f"{kind}（{exc}）" if kind else str(exc)

    def notice(self, notice: Notice | str) -> str:
        """One of the engine's notices in this language (by its code; plain text as it is)."""
        code, params = getattr(notice, "code", None), getattr(notice, "params", {})
        if code == "reduced":
            return self("reduced", **params)
        translated = _NOTICES.get(self.lang, {}).get(code)
        return translated.format(**params) if translated else self("notice", text=str(notice))

    def label(self, key: str) -> str:
        """A static label in this language (for text the frontend cannot translate, e.g. table headers)."""
        return _STATIC[self.lang][key]


def texts_for(lang: str, request=None) -> Texts:
    """The run-time language: the forced one, else the request's Accept-Language header."""
    if lang in LANGUAGES:
        return Texts(lang)
    header = None
    if request is not None:
        try:
            header = request.headers.get("accept-language")
        except AttributeError:
            header = None
    return Texts(language_from_header(header))


def check_complete() -> None:
    """Every key exists in both languages (tests call this)."""
    for a, b in ((EN, ZH), (RUNTIME_EN, RUNTIME_ZH)):
        missing = set(a) ^ set(b)
        if missing:
            raise AssertionError(f"keys missing in one language: {sorted(missing)}")
